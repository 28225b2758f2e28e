"""Tests for torsion.web._html: escaping, error pages and directory listings."""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import unquote

from hypothesis import given
from hypothesis import strategies as st

from torsion.web._html import (
    DirectoryEntry,
    escape,
    render_directory_listing,
    render_error_page,
)


class _Collector(HTMLParser):
    """Collects links, text and tags, to look at a page as a browser would."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.hrefs: list[str] = []
        self.link_texts: list[str] = []
        self.text: list[str] = []
        self._in_link = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for key, value in attrs:
            if key == "href" and value is not None:
                self.hrefs.append(value)
        if tag == "a":
            self._in_link = True
            self.link_texts.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._in_link = False

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._in_link:
            self.link_texts[-1] += data


def _parse(page: bytes) -> _Collector:
    collector = _Collector()
    collector.feed(page.decode("utf-8"))
    collector.close()
    return collector


def test_escape_covers_markup_and_both_quotes() -> None:
    assert escape("<a href=\"x\" title='y'>&</a>") == (
        "&lt;a href=&quot;x&quot; title=&#x27;y&#x27;&gt;&amp;&lt;/a&gt;"
    )


def test_error_page_escapes_every_piece() -> None:
    page = render_error_page(404, "Not <Found>", "<script>alert(1)</script>")
    assert b"<script>" not in page
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in page
    parsed = _parse(page)
    assert "script" not in parsed.tags
    assert "404 Not <Found>" in parsed.text
    assert "<script>alert(1)</script>" in parsed.text


def test_error_page_without_message_has_no_paragraph() -> None:
    parsed = _parse(render_error_page(500, "Internal Server Error"))
    assert "p" not in parsed.tags
    assert parsed.tags.count("h1") == 1


@given(st.text(), st.text())
def test_error_page_never_lets_markup_through(phrase: str, message: str) -> None:
    parsed = _parse(render_error_page(400, phrase, message))
    allowed = {"html", "head", "meta", "title", "body", "h1", "p"}
    assert set(parsed.tags) <= allowed


def test_listing_escapes_names_and_encodes_links() -> None:
    entries = [
        DirectoryEntry(name='<img src=x onerror="alert(1)">', size=10),
        DirectoryEntry(name="a b?c#d&e.txt", size=2048, modified=0.0),
        DirectoryEntry(name="javascript:alert(1)", size=1),
        DirectoryEntry(name="sub", is_directory=True),
    ]
    page = render_directory_listing("/files/<x>/", entries)
    parsed = _parse(page)
    assert "img" not in parsed.tags
    assert "Index of /files/<x>/" in parsed.text
    assert parsed.hrefs == [
        "../",
        "%3Cimg%20src%3Dx%20onerror%3D%22alert%281%29%22%3E",
        "a%20b%3Fc%23d%26e.txt",
        "javascript%3Aalert%281%29",
        "sub/",
    ]
    assert parsed.link_texts[1:] == [entries[0].name, entries[1].name, entries[2].name, "sub/"]
    assert "2.0K" in parsed.text
    assert "1970-01-01 00:00" in parsed.text


def test_listing_without_parent_link() -> None:
    parsed = _parse(render_directory_listing("/", [DirectoryEntry(name="a")], parent=False))
    assert parsed.hrefs == ["a"]


def test_listing_sizes() -> None:
    entries = [
        DirectoryEntry(name="b", size=1023),
        DirectoryEntry(name="m", size=5 * 1024 * 1024),
        DirectoryEntry(name="t", size=3 * 1024**5),
        DirectoryEntry(name="n"),
    ]
    text = _parse(render_directory_listing("/", entries)).text
    assert "1023B" in text
    assert "5.0M" in text
    assert "3072.0T" in text


def test_listing_keeps_undecodable_bytes_in_links() -> None:
    # os.listdir gives undecodable bytes as lone surrogates.
    name = b"caf\xe9.txt".decode("utf-8", "surrogateescape")
    parsed = _parse(render_directory_listing("/", [DirectoryEntry(name=name)], parent=False))
    assert parsed.hrefs == ["caf%E9.txt"]
    assert parsed.link_texts == ["caf?.txt"]


def test_listing_survives_other_surrogates() -> None:
    parsed = _parse(render_directory_listing("/", [DirectoryEntry(name="x\ud800")], parent=False))
    assert len(parsed.hrefs) == 1


@given(st.lists(st.text(min_size=1), max_size=5), st.text())
def test_listing_links_are_one_segment_naming_the_entry(names: list[str], path: str) -> None:
    entries = [DirectoryEntry(name=name) for name in names]
    parsed = _parse(render_directory_listing(path, entries, parent=False))
    assert set(parsed.tags) <= {
        "html", "head", "meta", "title", "body", "h1", "table", "thead", "tbody",
        "tr", "th", "td", "a",
    }  # fmt: skip
    assert len(parsed.hrefs) == len(names)
    for href, name in zip(parsed.hrefs, names, strict=True):
        assert "/" not in href
        assert ":" not in href
        assert unquote(href, errors="surrogateescape") == name.encode(
            "utf-8", "surrogateescape" if _escapable(name) else "replace"
        ).decode("utf-8", "surrogateescape")


def _escapable(name: str) -> bool:
    try:
        name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return False
    return True
