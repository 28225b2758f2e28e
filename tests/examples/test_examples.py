"""The README's examples run as written, and the README shows them as they are."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def test_readme_shows_the_examples_verbatim() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in (
        "echo_server.py",
        "echo_client.py",
        "app.py",
        "dns_server.py",
        "web_app.py",
        "mail_server.py",
    ):
        source = (EXAMPLES / name).read_text()
        assert source in readme, f"README.md no longer shows examples/{name} as it is"
        assert len(source.splitlines()) < 30, f"examples/{name} is too long for the README"


@contextmanager
def example(name: str, argument: str, first_line: str) -> Iterator[re.Match[str]]:
    """Run examples/NAME with ARGUMENT; yield its first line's match of ``first_line``.

    The example must then stop cleanly on SIGTERM.
    """
    server = subprocess.Popen(
        [sys.executable, "-u", str(EXAMPLES / name), argument],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    try:
        line = server.stdout.readline()
        found = re.search(first_line, line)
        assert found, f"unexpected first line: {line!r}"
        yield found
        server.terminate()
        assert server.wait(timeout=10) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=10)
        server.stdout.close()


def test_echo_client_against_echo_server() -> None:
    with example("echo_server.py", "0", r"127\.0\.0\.1:(\d+)") as found:
        client = subprocess.run(
            [sys.executable, str(EXAMPLES / "echo_client.py"), found.group(1)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert client.returncode == 0, client.stderr
        assert client.stdout == "hello, torsion\n"


def test_the_dns_server_example_answers_a_cname_chain() -> None:
    import dns.message
    import dns.query

    with example("dns_server.py", "0", r"-p (\d+) ") as found:
        query = dns.message.make_query("mail.example.test", "A")
        response = dns.query.udp(query, "127.0.0.1", port=int(found.group(1)), timeout=10)
        assert [rrset.to_text() for rrset in response.answer] == [
            "mail.example.test. 3600 IN CNAME www.example.test.",
            "www.example.test. 3600 IN A 192.0.2.10",
        ]


def test_the_web_app_example_serves_its_three_resources() -> None:
    import http.client

    with example("web_app.py", "0", r"127\.0\.0\.1:(\d+);") as found:
        connection = http.client.HTTPConnection("127.0.0.1", int(found.group(1)), timeout=10)
        asked = [
            ("GET", "/hello?name=you", None),
            ("POST", "/echo", b"ping"),
            ("GET", "/static/", None),
            ("PUT", "/echo", b"x"),
        ]
        answers = []
        for method, target, body in asked:
            connection.request(method, target, body=body)
            response = connection.getresponse()
            answers.append((response.status, response.read()))
        connection.close()
        assert answers[0] == (200, b"Hello, you!\n")
        assert answers[1] == (200, b"ping")
        assert answers[2][0] == 200
        assert b"<!DOCTYPE html>" in answers[2][1]
        assert answers[3][0] == 405


def test_the_mail_server_example_stores_what_smtp_takes_for_pop3(tmp_path: Path) -> None:
    import poplib
    import smtplib

    ports = r"SMTP on 127\.0\.0\.1:(\d+), POP3 on 127\.0\.0\.1:(\d+)"
    with example("mail_server.py", str(tmp_path), ports) as found:
        smtp_port, pop3_port = int(found.group(1)), int(found.group(2))
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as smtp:
            refused = smtp.sendmail(
                "bob@elsewhere.test",
                ["alice@example.test"],
                b"Subject: hello\r\n\r\nfrom the README\r\n",
            )
            assert refused == {}
            smtp.mail("bob@elsewhere.test")
            code, _ = smtp.rcpt("nobody@example.test")
            assert code == 550  # not a user here: refused at RCPT
        pop3 = poplib.POP3("127.0.0.1", pop3_port, timeout=10)
        try:
            pop3.user("alice")
            pop3.pass_("s3cret")
            count, _ = pop3.stat()
            assert count == 1
            _, lines, _ = pop3.retr(1)
            assert b"Subject: hello" in lines
            assert lines[-1] == b"from the README"
        finally:
            pop3.quit()
        assert len(list((tmp_path / "alice" / "new").iterdir())) == 1
