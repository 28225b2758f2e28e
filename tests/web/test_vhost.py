"""Tests for VirtualHosts: a tree per Host, the walk below it, and what it never echoes."""

from __future__ import annotations

from pathlib import Path

import pytest
from _http_server_helpers import connect

from torsion.web import File, Request, Resource, VirtualHosts, handles, request_host


class Where(Resource):
    """Says which tree it is and where the walk left the request."""

    is_leaf = True

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    @handles("GET")
    def get(self, request: Request) -> bytes:
        where = "/".join(request.prepath) + "|" + "/".join(request.postpath)
        return f"{self.name} {request_host(request)} {where}".encode()


def hosts() -> VirtualHosts:
    root = VirtualHosts(default=Where("default"))
    root.add_host("example.com", Where("example"))
    site = Resource()
    site.put_child("docs", Where("docs"))
    root.add_host("Site.Example", site)
    root.add_host("*.example.net", Where("net"))
    root.add_host("[2001:db8::1]", Where("v6"))
    return root


def ask(root: Resource, target: str, *lines: str, version: str = "1.1") -> tuple[int, bytes]:
    conn = connect(root)
    head = "\r\n".join([f"GET {target} HTTP/{version}", *lines, "", ""])
    conn.send(head.encode("latin-1"))
    [response] = conn.responses(eof=version == "1.0")
    conn.lose()
    return response.status, response.body


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("example.com", b"example example.com |a/b"),
        ("EXAMPLE.com:8080", b"example example.com |a/b"),
        ("example.com.", b"example example.com |a/b"),
        ("example.com:", b"example example.com |a/b"),
        ("other.test", b"default other.test |a/b"),
        ("a.example.net", b"net a.example.net |a/b"),
        ("a.b.example.net", b"net a.b.example.net |a/b"),
        ("example.net", b"default example.net |a/b"),
        ("[2001:DB8::1]:443", b"v6 2001:db8::1 |a/b"),
    ],
)
def test_the_host_picks_the_tree(host: str, expected: bytes) -> None:
    assert ask(hosts(), "/a/b", f"Host: {host}") == (200, expected)


def test_the_walk_goes_on_in_the_chosen_tree() -> None:
    status, body = ask(hosts(), "/docs/x/y", "Host: site.example")
    assert (status, body) == (200, b"docs site.example docs|x/y")
    assert ask(hosts(), "/missing", "Host: site.example")[0] == 404


def test_an_absolute_target_names_the_host() -> None:
    status, body = ask(hosts(), "http://example.com:80/p", "Host: other.test")
    assert (status, body) == (200, b"example example.com |p")


def test_http_1_0_without_host_gets_the_default() -> None:
    assert ask(hosts(), "/", version="1.0") == (200, b"default None |")


def test_an_unknown_host_without_default_is_404_and_never_echoed() -> None:
    root = VirtualHosts()
    root.add_host("example.com", Where("example"))
    status, body = ask(root, "/", "Host: <script>alert('evil')</script>")
    assert status == 404
    assert b"<script>" not in body
    assert b"evil" not in body


def test_a_file_tree_per_host(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "sub").mkdir()
    (tmp_path / "a" / "sub" / "index.html").write_text("site a")
    root = VirtualHosts()
    root.add_host("a.test", File(tmp_path / "a"))
    assert ask(root, "/sub/", "Host: a.test") == (200, b"site a")
    conn = connect(root)
    conn.send(b"GET /sub HTTP/1.1\r\nHost: a.test\r\n\r\n")
    [response] = conn.responses()
    assert (response.status, response.header(b"location")) == (301, b"./sub/")
    conn.lose()


@pytest.mark.parametrize("name", ["", "*", "a b", "a/b", "*.", "x.*.com", "u@h"])
def test_names_that_are_not_host_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="not a host name"):
        VirtualHosts().add_host(name, Resource())


def test_hosts_can_be_removed() -> None:
    root = hosts()
    root.remove_host("EXAMPLE.COM")
    root.remove_host("*.example.net")
    assert ask(root, "/", "Host: example.com")[1].startswith(b"default")
    assert ask(root, "/", "Host: a.example.net")[1].startswith(b"default")
    with pytest.raises(KeyError):
        root.remove_host("example.com")
    assert "site.example" in repr(root)
