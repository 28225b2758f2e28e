"""``File``: a resource serving a file, or a directory tree, from the file system.

What a client may reach is decided before anything is opened:

* The path's segments are the request's ``postpath`` (the site has already
  split the path before decoding it, so ``%2F`` never makes a separator, and
  refused ``..``). Each segment is checked again here: an empty segment
  inside the path, ``.``, ``..``, a ``/`` or a NUL is not found.
* Hidden names (a segment starting with ``.``: ``.git``, ``.htpasswd``) are
  not found, and are left out of listings, unless ``hidden=True``. The one
  exception is ``.well-known``, the directory RFC 8615 reserves for
  metadata meant to be public (ACME challenges, security.txt).
* The path is resolved (``os.path.realpath``) and must stay inside the root:
  a symbolic link pointing outside the tree is not found, unless
  ``follow_symlinks=True`` (for trees whose links the operator placed on
  purpose). Links that stay inside the tree are always followed. The check
  trusts the tree not to be changed under it by someone hostile: a link
  swapped between the check and the open is not caught.
* Only regular files and directories are served (never a FIFO, whose open
  would block, nor a device), and a file is opened non-blocking and checked
  again with ``fstat`` once open.

A file is served with its type (``mimetypes``, with a charset for text),
a weak ``ETag`` from its size and modification time and ``Last-Modified``;
conditional requests get 304 or 412 (RFC 9110 section 13.2.2), and a
``Range`` gets 206 (one range, or ``multipart/byteranges``) or 416 (RFC
9110 section 14). A directory is served by its index file, else by a listing
(names escaped, at most ``max_listing`` entries), else 403; ``/dir`` is
redirected to ``/dir/`` so that the listing's relative links work.

Content codings (RFC 9110 section 8.4): a precompressed ``NAME.br`` or
``NAME.gz`` beside the file is served when the client accepts it (and when it
is not older than the file, so a stale one is never sent); otherwise a
compressible type (text, JSON, JavaScript, SVG...) no larger than
``compress_max`` is compressed on the fly, whole, so that the CPU spent on a
response is bounded (use precompressed files for large assets). Responses
that could differ by coding carry ``Vary: Accept-Encoding``. A ``Range``
request is answered from the identity file or the precompressed one, never
from a compression made on the fly.

A large body is sent with ``Request.send_file``: the kernel copies it to
the socket (``os.sendfile``) where the connection allows it, and otherwise
it is streamed in chunks, each written only once the connection's buffer
has room, so a large file costs one chunk of memory. Reads, ``stat`` and
directory scans run on the loop's thread, which is right for local disks;
pass ``threads`` (the reactor) to run them in its thread pool for slow or
network file systems (the body is then streamed in ``chunk_size`` reads made
there).
"""

from __future__ import annotations

import importlib
import mimetypes
import os
import stat
import typing
import urllib.parse
import zlib
from collections.abc import Callable, Mapping
from typing import Any, BinaryIO, Final, TypeVar

from torsion.defer import Deferred
from torsion.internet import ThreadRunner
from torsion.web._conditional import (
    ETag,
    Precondition,
    check_preconditions,
    format_http_date,
    if_range_allows,
    make_etag,
)
from torsion.web._html import DirectoryEntry, render_directory_listing
from torsion.web._ranges import (
    ByteRange,
    RangeOutcome,
    parse_range,
    plan_multipart,
    unsatisfiable_content_range,
)
from torsion.web._request import Request
from torsion.web._resource import Resource, handles, render_error

_brotli: Any
try:
    _brotli = importlib.import_module("brotli")
except ImportError:  # pragma: no cover - brotli is part of the web extra
    _brotli = None

__all__ = ["File"]

T = TypeVar("T")

DEFAULT_CHUNK_SIZE: Final = 64 * 1024
# Bodies up to this size are read whole and sent in one write.
_SMALL: Final = 64 * 1024
# Files smaller than this gain nothing from compression (the coding's
# framing is about as large as what it saves).
_COMPRESS_MIN: Final = 256

# Types missing from Python's own table, or better named (RFC 9239 makes
# text/javascript the one type for JavaScript).
_EXTRA_TYPES: Final = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".md": "text/markdown",
    ".webp": "image/webp",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".webmanifest": "application/manifest+json",
}
# A file that is itself compressed is served as what it is, not with a
# Content-Encoding (a download of x.tar.gz must stay gzipped on disk).
_ENCODING_TYPES: Final = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
    "br": "application/x-brotli",
    "compress": "application/x-compress",
}
# Types that are text without saying text/, and get a charset and compression.
_TEXT_LIKE: Final = frozenset(
    {
        "application/javascript",
        "application/json",
        "application/manifest+json",
        "application/xml",
        "application/xhtml+xml",
        "application/rss+xml",
        "application/atom+xml",
        "image/svg+xml",
    }
)
_COMPRESSIBLE_ONLY: Final = frozenset(
    {"application/wasm", "image/x-icon", "image/vnd.microsoft.icon"}
)
# Precompressed variants, in the order preferred, with their file suffixes.
_VARIANTS: Final = (("br", ".br"), ("gzip", ".gz"))

_types = mimetypes.MimeTypes()


class File(Resource):
    """Serve the file or directory tree at ``path``.

    Publish it anywhere in a tree: ``root.put_child("static", File(dir))``,
    or as the site's root. It takes the rest of the request's path itself.

    Args:
        path: A directory (its tree is served) or a single file.
        default_type: The type of files ``mimetypes`` does not know.
        index_names: The files that stand for their directory, in order.
        listing: Whether a directory without an index file is listed (else
            403).
        hidden: Whether names starting with ``.`` are served and listed.
        follow_symlinks: Whether links pointing outside the tree are
            followed (links within it always are).
        charset: The charset named in the type of text files (None for none).
        content_types: More extensions and their types (``{".log":
            "text/plain"}``), over the built-in table.
        compress: Whether compressible files are compressed on the fly for
            clients that accept gzip or br (precompressed files are served
            either way).
        compress_max: The largest file compressed on the fly, in bytes.
        max_listing: The most entries a listing shows (the page is built in
            memory; the rest of a larger directory is left out).
        chunk_size: Bytes read from a file at a time.
        threads: Where to run file-system calls (the reactor); None runs
            them on the loop's thread.
    """

    is_leaf = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        default_type: str = "application/octet-stream",
        index_names: tuple[str, ...] = ("index.html",),
        listing: bool = True,
        hidden: bool = False,
        follow_symlinks: bool = False,
        charset: str | None = "utf-8",
        content_types: Mapping[str, str] | None = None,
        compress: bool = True,
        compress_max: int = 512 * 1024,
        max_listing: int = 10_000,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        threads: ThreadRunner | None = None,
    ) -> None:
        """Make the resource; the path is resolved once, here."""
        super().__init__()
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be 1 or more, not {chunk_size}")
        self.path = os.path.realpath(os.fspath(path))
        self.default_type = default_type
        self.index_names = index_names
        self.listing = listing
        self.hidden = hidden
        self.follow_symlinks = follow_symlinks
        self.charset = charset
        self.content_types = {**_EXTRA_TYPES, **(content_types or {})}
        self.compress = compress
        self.compress_max = compress_max
        self.max_listing = max_listing
        self.chunk_size = chunk_size
        self._threads = threads

    # -- finding the file --------------------------------------------------

    def _run(self, f: Callable[..., T], *args: Any) -> Deferred[T] | T:
        threads = self._threads
        if threads is None:
            return f(*args)
        return threads.defer_to_thread(f, *args)

    async def _call(self, f: Callable[..., T], *args: Any) -> T:
        result = self._run(f, *args)
        if isinstance(result, Deferred):
            return typing.cast(T, await result)
        return result

    def _allowed_name(self, segment: str) -> bool:
        if not segment or segment in (".", "..") or "/" in segment or "\x00" in segment:
            return False
        return self.hidden or not _is_hidden(segment)

    def _inside(self, resolved: str) -> bool:
        """Whether a resolved path may be served (inside the tree, not hidden)."""
        root = self.path
        if resolved == root:
            return True
        if not resolved.startswith(root.rstrip(os.sep) + os.sep):
            return self.follow_symlinks
        if self.hidden:
            return True
        # A link inside the tree may still lead to a hidden name.
        relative = resolved[len(root.rstrip(os.sep)) + 1 :]
        return not any(_is_hidden(part) for part in relative.split(os.sep))

    def content_type(self, name: str) -> str:
        """The ``Content-Type`` of a file called ``name``.

        Args:
            name: The file's name (its extension decides).

        Returns:
            The type, with ``charset`` for text types.
        """
        lowered = name.lower()
        extension = os.path.splitext(lowered)[1]
        found = self.content_types.get(extension)
        if found is None:
            guessed, encoding = _types.guess_type(lowered, strict=False)
            if encoding is not None:
                found = _ENCODING_TYPES.get(encoding, self.default_type)
            else:
                found = guessed or self.default_type
        if self.charset and "charset=" not in found and _is_text(found):
            found = f"{found}; charset={self.charset}"
        return found

    @handles("GET")
    async def render_get(self, request: Request) -> bytes | None:
        """Serve the file, the directory's index or listing, or an error."""
        segments = list(request.postpath)
        wants_directory = not segments or segments[-1] == ""
        if segments and segments[-1] == "":
            segments.pop()
        if not all(self._allowed_name(segment) for segment in segments):
            return render_error(request, 404, "No such file.")
        candidate = os.path.join(self.path, *segments)
        try:
            resolved = await self._call(os.path.realpath, candidate)
            info = await self._call(os.stat, resolved)
        except (OSError, ValueError):
            return render_error(request, 404, "No such file.")
        if not self._inside(resolved):
            return render_error(request, 404, "No such file.")
        if stat.S_ISDIR(info.st_mode):
            if not wants_directory or not request.postpath:
                _redirect_to_directory(request)
                return None
            return await self._directory(request, resolved, segments)
        if not stat.S_ISREG(info.st_mode) or (
            wants_directory and request.postpath and (segments or request.prepath)
        ):
            # A trailing slash after a file names nothing (as in Apache).
            return render_error(request, 404, "No such file.")
        return await self._file(request, resolved)

    # -- directories ---------------------------------------------------------

    async def _directory(
        self, request: Request, resolved: str, segments: list[str]
    ) -> bytes | None:
        for name in self.index_names:
            index = os.path.join(resolved, name)
            try:
                real = await self._call(os.path.realpath, index)
                info = await self._call(os.stat, real)
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode) and self._inside(real):
                return await self._file(request, real)
        if not self.listing:
            return render_error(request, 403, "Directory listing is not allowed here.")
        try:
            entries = await self._call(self._list, resolved)
        except OSError:
            return render_error(request, 403, "The directory cannot be read.")
        shown = "/" + "".join(f"{segment}/" for segment in [*request.prepath, *segments])
        request.response_headers.set(b"Content-Type", b"text/html; charset=utf-8")
        return render_directory_listing(shown, entries, parent=shown != "/")

    def _list(self, directory: str) -> list[DirectoryEntry]:
        # Runs in a worker thread when there is a pool: plain blocking calls.
        entries: list[DirectoryEntry] = []
        with os.scandir(directory) as scan:
            for entry in scan:
                if len(entries) >= self.max_listing:
                    break
                name = entry.name
                if not self.hidden and _is_hidden(name):
                    continue
                try:
                    if entry.is_symlink() and not self._inside(os.path.realpath(entry.path)):
                        continue
                    info = entry.stat()
                except OSError:
                    continue
                is_directory = stat.S_ISDIR(info.st_mode)
                if not is_directory and not stat.S_ISREG(info.st_mode):
                    continue
                entries.append(
                    DirectoryEntry(
                        name=name,
                        is_directory=is_directory,
                        size=None if is_directory else info.st_size,
                        modified=info.st_mtime,
                        content_type="" if is_directory else self.content_type(name),
                    )
                )
        entries.sort(key=lambda e: (not e.is_directory, e.name))
        return entries

    # -- files -----------------------------------------------------------------

    async def _file(self, request: Request, resolved: str) -> bytes | None:
        try:
            file = await self._call(_open_regular, resolved)
        except OSError:
            return render_error(request, 404, "No such file.")
        try:
            return await self._serve_open(request, resolved, file)
        finally:
            file.close()

    async def _serve_open(self, request: Request, resolved: str, file: BinaryIO) -> bytes | None:
        info = os.fstat(file.fileno())
        content_type = self.content_type(os.path.basename(resolved))
        headers = request.response_headers
        accepted = _accepted_codings(request.headers.get_all(b"accept-encoding"))
        compressible = _is_compressible(content_type)
        ranged = request.method == "GET" and request.headers.get(b"range") is not None
        coding = None
        variant: BinaryIO | None = None
        try:
            for name, suffix in _VARIANTS:
                if name not in accepted:
                    continue
                opened = await self._open_variant(resolved + suffix, info.st_mtime)
                if opened is not None:
                    variant, coding = opened, name
                    break
            if variant is not None:
                file, info = variant, os.fstat(variant.fileno())
            has_variants = variant is not None or compressible
            if has_variants:
                headers.add(b"Vary", b"Accept-Encoding")
            etag = make_etag(info.st_size, info.st_mtime, weak=True)
            on_the_fly = None
            if (
                variant is None
                and not ranged
                and self.compress
                and compressible
                and _COMPRESS_MIN <= info.st_size <= self.compress_max
            ):
                on_the_fly = _pick_compressor(accepted)
                if on_the_fly is not None:
                    coding = on_the_fly
                    etag = ETag(f"{etag.tag}-{coding}", weak=True)
            headers.set(b"Content-Type", content_type)
            headers.set(b"ETag", etag.format())
            headers.set(b"Last-Modified", format_http_date(info.st_mtime))
            if coding is not None:
                headers.set(b"Content-Encoding", coding)
            if on_the_fly is None:
                headers.set(b"Accept-Ranges", b"bytes")
            outcome = check_preconditions(
                request.method.encode("ascii"),
                request.headers,
                etag=etag,
                last_modified=info.st_mtime,
            )
            if outcome is Precondition.NOT_MODIFIED:
                request.set_response_code(304)
                return b""
            if outcome is Precondition.PRECONDITION_FAILED:
                for field in (b"ETag", b"Last-Modified", b"Content-Encoding", b"Accept-Ranges"):
                    headers.remove(field)
                return render_error(request, 412, "A precondition was not met.")
            if on_the_fly is not None:
                return await self._compressed(request, file, info.st_size, on_the_fly)
            if ranged and if_range_allows(
                request.headers.get(b"if-range"), etag=etag, last_modified=info.st_mtime
            ):
                plan = parse_range(request.headers.get(b"range"), info.st_size)
                if plan.outcome is RangeOutcome.NOT_SATISFIABLE:
                    headers.set(b"Content-Range", unsatisfiable_content_range(info.st_size))
                    for field in (b"Content-Encoding", b"ETag", b"Last-Modified"):
                        headers.remove(field)
                    return render_error(request, 416, "The range is not within the file.")
                if plan.outcome is RangeOutcome.PARTIAL:
                    return await self._ranges(request, file, info.st_size, plan.ranges)
            return await self._send(request, file, [(b"", ByteRange(0, info.st_size - 1))])
        finally:
            if variant is not None:
                variant.close()

    async def _open_variant(self, path: str, modified: float) -> BinaryIO | None:
        try:
            real = await self._call(os.path.realpath, path)
            if not self._inside(real):
                return None
            variant = await self._call(_open_regular, real)
        except OSError:
            return None
        if os.fstat(variant.fileno()).st_mtime < modified:
            # Older than the file it compresses: left over from a previous
            # version, so it would serve stale content.
            variant.close()
            return None
        return variant

    async def _ranges(
        self, request: Request, file: BinaryIO, size: int, ranges: tuple[ByteRange, ...]
    ) -> bytes | None:
        request.set_response_code(206)
        headers = request.response_headers
        if len(ranges) == 1:
            headers.set(b"Content-Range", ranges[0].content_range(size))
            return await self._send(request, file, [(b"", ranges[0])])
        content_type = headers.get(b"Content-Type")
        plan = plan_multipart(ranges, size, content_type)
        headers.set(b"Content-Type", plan.content_type)
        pieces = [(part.header, part.range) for part in plan.parts]
        return await self._send(request, file, pieces, trailer=plan.trailer)

    async def _send(
        self,
        request: Request,
        file: BinaryIO,
        pieces: list[tuple[bytes, ByteRange]],
        *,
        trailer: bytes = b"",
    ) -> bytes | None:
        # Each piece: bytes to write, then a range of the file.
        total = len(trailer) + sum(len(head) + max(r.length, 0) for head, r in pieces)
        if request.method == "HEAD":
            request.response_headers.set(b"Content-Length", b"%d" % total)
            request.finish()
            return None
        if total <= _SMALL:
            # One read, one write, with its Content-Length.
            parts: list[bytes] = []
            for head, byte_range in pieces:
                parts.append(head)
                if byte_range.length > 0:
                    parts.append(await self._read(file, byte_range.first, byte_range.length))
            parts.append(trailer)
            return b"".join(parts)
        request.response_headers.set(b"Content-Length", b"%d" % total)
        try:
            for head, byte_range in pieces:
                if head:
                    request.write(head)
                if self._threads is None:
                    # Zero-copy where the connection allows it.
                    await request.send_file(
                        file,
                        offset=byte_range.first,
                        count=max(byte_range.length, 0),
                        chunk_size=self.chunk_size,
                    )
                else:
                    await self._stream(request, file, byte_range)
        except ConnectionError:
            # The client went away: nothing more to send, nobody to tell.
            return None
        if trailer:
            request.write(trailer)
        request.finish()
        return None

    async def _read(self, file: BinaryIO, offset: int, count: int) -> bytes:
        return await self._call(_read_at, file, offset, count)

    async def _stream(self, request: Request, file: BinaryIO, byte_range: ByteRange) -> None:
        offset, left = byte_range.first, byte_range.length
        while left > 0:
            # Only read once the connection has room: one chunk in memory.
            await request.drained()
            data = await self._read(file, offset, min(self.chunk_size, left))
            if not data:
                # The file shrank: the response ends short, which makes the
                # connection close (the client sees it was cut).
                return
            request.write(data)
            offset += len(data)
            left -= len(data)

    async def _compressed(
        self, request: Request, file: BinaryIO, size: int, coding: str
    ) -> bytes | None:
        compressor = _compressor(coding)
        parts: list[bytes] = []
        offset = 0
        while offset < size:
            data = await self._read(file, offset, min(self.chunk_size, size - offset))
            if not data:
                break
            offset += len(data)
            parts.append(compressor.compress(data))
        parts.append(compressor.flush())
        body = b"".join(parts)
        if request.method == "HEAD":
            request.response_headers.set(b"Content-Length", b"%d" % len(body))
            request.finish()
            return None
        return body

    def __repr__(self) -> str:
        """Where the files come from, for debugging."""
        return f"<File {self.path!r}>"


class _Compressor(typing.Protocol):
    def compress(self, data: bytes, /) -> bytes: ...

    def flush(self) -> bytes: ...


class _Brotli:
    def __init__(self) -> None:
        assert _brotli is not None
        # Quality 5: most of brotli's gain at a gzip-like CPU cost.
        self._compressor = _brotli.Compressor(quality=5)

    def compress(self, data: bytes, /) -> bytes:
        return typing.cast(bytes, self._compressor.process(data))

    def flush(self) -> bytes:
        return typing.cast(bytes, self._compressor.finish())


def _compressor(coding: str) -> _Compressor:
    if coding == "br":
        return _Brotli()
    # wbits 31: the gzip container (RFC 1952), as Content-Encoding: gzip says.
    return zlib.compressobj(6, zlib.DEFLATED, 31)


def _pick_compressor(accepted: Mapping[str, float]) -> str | None:
    if "br" in accepted and _brotli is not None:
        return "br"
    if "gzip" in accepted:
        return "gzip"
    return None


def _accepted_codings(values: list[bytes]) -> dict[str, float]:
    """The codings ``Accept-Encoding`` accepts (q above 0), by name (RFC 9110 12.5.3)."""
    found: dict[str, float] = {}
    refused: set[str] = set()
    star = 0.0
    for value in values:
        for item in value.decode("latin-1").split(","):
            name, _, parameters = item.partition(";")
            name = name.strip().lower()
            if not name:
                continue
            quality = 1.0
            for parameter in parameters.split(";"):
                key, equals, number = parameter.partition("=")
                if equals and key.strip().lower() == "q":
                    try:
                        quality = float(number.strip())
                    except ValueError:
                        quality = 0.0
            if name == "*":
                star = quality
            elif quality > 0:
                found[name] = quality
            else:
                refused.add(name)
    if star > 0:
        for name in ("br", "gzip"):
            if name not in refused:
                found.setdefault(name, star)
    # "x-gzip" is gzip (RFC 9110 8.4.1.3).
    if "x-gzip" in found:
        found.setdefault("gzip", found["x-gzip"])
    return found


def _is_hidden(name: str) -> bool:
    return name.startswith(".") and name != ".well-known"


def _is_text(content_type: str) -> bool:
    media = content_type.partition(";")[0].strip()
    return media.startswith("text/") or media in _TEXT_LIKE


def _is_compressible(content_type: str) -> bool:
    media = content_type.partition(";")[0].strip()
    return _is_text(media) or media in _COMPRESSIBLE_ONLY


def _open_regular(path: str) -> BinaryIO:
    # O_NONBLOCK: should a FIFO be swapped in after the stat, opening it
    # does not wait for a writer; fstat then refuses it.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise IsADirectoryError(path)
        return os.fdopen(fd, "rb", buffering=0)
    except BaseException:
        os.close(fd)
        raise


def _read_at(file: BinaryIO, offset: int, count: int) -> bytes:
    return os.pread(file.fileno(), count, offset)


def _redirect_to_directory(request: Request) -> None:
    # RFC 9110 10.2.2: a relative reference, resolved against the request's
    # own URL. The last segment alone, percent-encoded whole, cannot turn
    # into another host ("//host") or a scheme ("javascript:").
    last = request.prepath[-1] if not request.postpath else request.postpath[-1]
    target = "./" + urllib.parse.quote(last, safe="") + "/" if last else "./"
    if request.query:
        target += "?" + request.query.decode("latin-1")
    request.redirect(target, 301)
