"""Safe HTML for the pages torsion.web writes itself: error pages and listings.

Whatever a client sent (a path, a query, a header) may end up in these pages,
so every piece of text is escaped before it meets markup (CVE-2022-39348 and
CVE-2024-41810 were a Host header and a redirect URL written into HTML raw).
Links are percent-encoded as well as escaped: a file name is text in the
listing and a URL path segment in its ``href``.
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote

__all__ = ["DirectoryEntry", "escape", "render_directory_listing", "render_error_page"]


def escape(text: str) -> str:
    """Escape text for HTML element content and quoted attribute values.

    ``&``, ``<``, ``>``, ``"`` and ``'`` become character references, so the
    result is safe between tags and inside single- or double-quoted attributes.

    Args:
        text: Any text, typically something a client sent.

    Returns:
        The escaped text.
    """
    return html.escape(text, quote=True)


def render_error_page(code: int, phrase: str, message: str = "") -> bytes:
    """Render a small HTML page for an error response.

    Args:
        code: The status code, e.g. 404.
        phrase: Its reason phrase, e.g. "Not Found".
        message: A longer explanation; may contain client-supplied text (it is
            escaped like everything else).

    Returns:
        The page, UTF-8 encoded; serve it as ``text/html; charset=utf-8``.
    """
    title = escape(f"{code} {phrase}")
    body = f"<p>{escape(message)}</p>\n" if message else ""
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8">'
        f"<title>{title}</title></head>\n"
        f"<body>\n<h1>{title}</h1>\n{body}</body>\n</html>\n"
    )
    return page.encode("utf-8")


@dataclass(frozen=True, slots=True, kw_only=True)
class DirectoryEntry:
    """One row of a directory listing.

    Attributes:
        name: The entry's file name as the file system gives it.
        is_directory: Whether the entry is a directory (its link ends in "/").
        size: Its size in bytes, or None to leave the column empty.
        modified: Its modification time (seconds since the epoch), or None.
        content_type: A MIME type or description to show, or "".
    """

    name: str
    is_directory: bool = False
    size: int | None = None
    modified: float | None = None
    content_type: str = ""


def _format_size(size: int | None) -> str:
    """A human-readable size: bytes, then K/M/G/T with one decimal."""
    if size is None:
        return ""
    if size < 1024:
        return f"{size}B"
    amount = float(size)
    for unit in "KMGT":
        amount /= 1024
        if amount < 1024 or unit == "T":
            return f"{amount:.1f}{unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def _format_time(modified: float | None) -> str:
    """An ISO-like UTC time for the listing, or "" when unknown."""
    if modified is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(modified))


def _href(name: str, is_directory: bool) -> str:
    """The relative link to an entry: one percent-encoded path segment.

    ``quote`` with ``safe=""`` encodes "/", "?", "#", ":" and every other
    character with a meaning in a URL, so a name is always one segment and
    never a scheme (``javascript:``) or a query. A leading "./" would be
    needed for a name with ":" in its first segment, but ":" is encoded.
    """
    try:
        link = quote(name, safe="", errors="surrogateescape")
    except UnicodeEncodeError:
        # A surrogate surrogateescape did not make: no bytes to give back.
        link = quote(name, safe="", errors="replace")
    return link + "/" if is_directory else link


def render_directory_listing(
    path: str, entries: Iterable[DirectoryEntry], *, parent: bool = True
) -> bytes:
    """Render an HTML listing of a directory's entries.

    Names are escaped as text and percent-encoded (then escaped) in links;
    the path in the title and heading is escaped too.

    Args:
        path: The URL path of the directory, shown as the title (as decoded
            text; it is escaped here).
        entries: The entries, in the order to show them.
        parent: Whether to add a link to the parent directory.

    Returns:
        The page, UTF-8 encoded; serve it as ``text/html; charset=utf-8``.
    """
    title = escape(f"Index of {path}")
    rows: list[str] = []
    if parent:
        rows.append('<tr><td><a href="../">../</a></td><td></td><td></td><td></td></tr>')
    for entry in entries:
        # Lone surrogates (undecodable bytes in a name) cannot be UTF-8
        # encoded: show them as U+FFFD, while the link keeps their bytes.
        shown = entry.name.encode("utf-8", "replace").decode("utf-8")
        label = escape(shown + ("/" if entry.is_directory else ""))
        href = escape(_href(entry.name, entry.is_directory))
        size = "" if entry.is_directory else _format_size(entry.size)
        rows.append(
            f'<tr><td><a href="{href}">{label}</a></td>'
            f"<td>{escape(size)}</td><td>{escape(_format_time(entry.modified))}</td>"
            f"<td>{escape(entry.content_type)}</td></tr>"
        )
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8">'
        f"<title>{title}</title></head>\n<body>\n<h1>{title}</h1>\n"
        "<table>\n<thead><tr><th>Name</th><th>Size</th><th>Modified (UTC)</th>"
        "<th>Type</th></tr></thead>\n<tbody>\n"
        + "\n".join(rows)
        + "\n</tbody>\n</table>\n</body>\n</html>\n"
    )
    return page.encode("utf-8", "replace")
