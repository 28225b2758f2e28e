"""Tests for reading resolv.conf: servers, options, the search list, the environment, bounds."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from torsion.names._resolvconf import ResolvConf, parse_resolv_conf, read_resolv_conf


def test_every_option_of_resolv_conf_5_is_read() -> None:
    conf = parse_resolv_conf(
        "nameserver 192.0.2.1\n"
        "search corp.example.  lab.example\n"
        "options ndots:3 timeout:2 attempts:3 rotate edns0 use-vc no-tld-query\n"
    )
    assert conf == ResolvConf(
        servers=(("192.0.2.1", 53),),
        timeout=2.0,
        attempts=3,
        search=("corp.example", "lab.example"),
        ndots=3,
        rotate=True,
        edns0=True,
        use_vc=True,
        tld_query=False,
    )


def test_the_defaults_are_the_c_librarys() -> None:
    conf = parse_resolv_conf("")
    assert conf.servers == (("127.0.0.1", 53),)
    assert (conf.timeout, conf.attempts, conf.ndots) == (5.0, 2, 1)
    assert conf.search == ()
    assert (conf.rotate, conf.edns0, conf.use_vc) == (False, False, False)
    assert conf.tld_query


def test_ipv6_and_scoped_nameservers_are_kept_with_their_scope() -> None:
    conf = parse_resolv_conf(
        "nameserver 2001:DB8::1\nnameserver fe80::1%eth0\nnameserver fe80::2%\n"
    )
    assert conf.servers == (("2001:db8::1", 53), ("fe80::1%eth0", 53))


def test_the_last_search_or_domain_line_wins() -> None:
    assert parse_resolv_conf("search a.example b.example\ndomain c.example\n").search == (
        "c.example",
    )
    assert parse_resolv_conf("domain c.example\nsearch a.example b.example\n").search == (
        "a.example",
        "b.example",
    )
    # An empty search line empties the list (and the host's domain is not used).
    assert parse_resolv_conf("search\n", hostname="host.corp.example").search == ()


def test_without_a_search_line_the_search_list_is_the_hosts_domain() -> None:
    assert parse_resolv_conf("", hostname="box.corp.example").search == ("corp.example",)
    # A host name without a dot: the root, which adds nothing.
    assert parse_resolv_conf("", hostname="box").search == ()


def test_bad_search_domains_are_skipped_and_the_list_is_bounded() -> None:
    long_label = "a" * 64
    conf = parse_resolv_conf(f"search ok.example {long_label}.example ok.example x..y\n")
    assert conf.search == ("ok.example",)
    many = " ".join(f"d{i}.example" for i in range(40))
    assert len(parse_resolv_conf(f"search {many}\n").search) == 16


def test_options_are_capped_and_bad_ones_ignored() -> None:
    conf = parse_resolv_conf(
        "options ndots:99 timeout:99 attempts:99 ndots:x timeout: attempts:-1 "
        "debug inet6 single-request trust-ad ndots:99999999999999\n"
    )
    assert (conf.ndots, conf.timeout, conf.attempts) == (15, 30.0, 5)
    assert parse_resolv_conf("options ndots:0\n").ndots == 0


def test_comments_and_overlong_lines_are_skipped() -> None:
    conf = parse_resolv_conf(
        "# nameserver 192.0.2.9\n"
        "; search nope.example\n"
        f"nameserver 192.0.2.8 {'x' * 2000}\n"
        "search yes.example # nope.example\n"
        "nameserver 192.0.2.1 ; the first\n"
    )
    assert conf.servers == (("192.0.2.1", 53),)
    assert conf.search == ("yes.example",)


def test_localdomain_and_res_options_come_from_the_environment() -> None:
    text = "search file.example\noptions ndots:2 timeout:3\n"
    environ = {"LOCALDOMAIN": "env1.example env2.example", "RES_OPTIONS": "ndots:4 rotate"}
    conf = parse_resolv_conf(text, environ=environ)
    assert conf.search == ("env1.example", "env2.example")
    assert (conf.ndots, conf.timeout, conf.rotate) == (4, 3.0, True)
    # An empty LOCALDOMAIN empties the search list.
    assert parse_resolv_conf(text, environ={"LOCALDOMAIN": ""}).search == ()


def test_reading_a_file_honours_the_environment_given(tmp_path: Path) -> None:
    path = tmp_path / "resolv.conf"
    path.write_text("nameserver 192.0.2.1\nsearch file.example\n")
    conf = read_resolv_conf(str(path), environ={"RES_OPTIONS": "use-vc"})
    assert conf.servers == (("192.0.2.1", 53),)
    assert conf.search == ("file.example",)
    assert conf.use_vc
    missing = read_resolv_conf(str(tmp_path / "none"), environ={"LOCALDOMAIN": "x.example"})
    assert missing.servers == (("127.0.0.1", 53),)
    assert missing.search == ("x.example",)


def test_only_the_first_64_kib_is_read(tmp_path: Path) -> None:
    path = tmp_path / "resolv.conf"
    path.write_text("#" * 70_000 + "\nnameserver 192.0.2.1\n")
    assert read_resolv_conf(str(path), environ={}).servers == (("127.0.0.1", 53),)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_any_text_parses_within_bounds(text: str) -> None:
    conf = parse_resolv_conf(text, environ={"RES_OPTIONS": text[:50]})
    assert 1 <= len(conf.servers) <= 3
    assert len(conf.search) <= 16
    assert 0 <= conf.ndots <= 15
    assert 1 <= conf.timeout <= 30
    assert 1 <= conf.attempts <= 5
