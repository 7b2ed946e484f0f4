"""Where events come from: the live stream or a file replayed to its end, behind one small interface.

A source yields `Delivery`s, each a run of payloads with the position to store after them. The live
stream's position is its `Last-Event-ID`; a file's is how many records were consumed plus a fingerprint
of the file's beginning, so a killed replay resumes where it committed and a different file at the same
path starts over (the primary key makes starting over harmless anyway).

Files are read as a careful operator would expect: a UTF-8 byte order mark at the start (as Windows
editors write it) is not part of the first event, and a gzip file cut short (an interrupted download)
yields every complete record before the cut, then says where the file ended in its last delivery's
`damage` instead of losing the whole file to one `EOFError`.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol, cast

from ingestion.sse import SSEDecoder

READ_SIZE = 1 << 20
_FINGERPRINT_BYTES = 1 << 16
_GZIP_MAGIC = b"\x1f\x8b"
_BOM = b"\xef\xbb\xbf"
# What reading a damaged gzip file raises: cut short (`EOFError`), a bad header or checksum, corrupt data.
_DAMAGE = (EOFError, gzip.BadGzipFile, zlib.error)


@dataclass(frozen=True, slots=True)
class Delivery:
    """Payloads received together; `position` is the cursor value once all of them are committed."""

    payloads: list[bytes | str]
    position: str | None
    # Index of the first payload within its source (its 1-based line for JSON Lines), for quarantine rows.
    first_record: int = 0
    # The first delivery after (re)connecting with a resume point: where a retention gap would show.
    resumed: bool = False
    # Set on a file's last delivery when the file is damaged (a gzip file cut short): why reading
    # stopped before the end. The records before the damage are delivered; the rest cannot be read.
    damage: str | None = None


class Source(Protocol):
    """A stream of deliveries with a stable key under which its cursor is stored."""

    @property
    def stream(self) -> str: ...

    @property
    def live(self) -> bool:
        """True for a stream that never ends (the event lag is meaningful), False for a file replay."""
        ...

    @property
    def total_bytes(self) -> int | None: ...

    @property
    def bytes_read(self) -> int: ...

    def origin(self, record: int) -> str:
        """How quarantine rows name where record number `record` came from."""
        ...

    def deliveries(self, position: str | None) -> AsyncIterator[Delivery]: ...


def is_url(spec: str) -> bool:
    return spec.startswith(("http://", "https://"))


def _open_binary(path: Path) -> tuple[IO[bytes], IO[bytes]]:
    """The decompressed stream and the raw file under it (whose offset measures progress)."""
    raw: IO[bytes] = path.open("rb")
    magic = raw.read(2)
    raw.seek(0)
    if magic == _GZIP_MAGIC:
        return cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb")), raw
    return raw, raw


class _Chunks:
    """A file's decompressed bytes in chunks of about `READ_SIZE`; at damage, what was read, then the end.

    `read1` (one read of the layer below) rather than `read`: a `read` that meets the end of a cut-short
    gzip file raises and loses the bytes it had already decompressed.
    """

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self.damage: str | None = None

    def read(self, size: int = READ_SIZE) -> bytes:
        """Up to `size` bytes; `b""` at the end of the file or after damage (then `damage` says what)."""
        parts: list[bytes] = []
        got = 0
        while got < size and self.damage is None:
            try:
                part = self._stream.read1(size - got)  # type: ignore[attr-defined]
            except _DAMAGE as exc:
                self.damage = str(exc) or type(exc).__name__
                break
            if not part:
                break
            parts.append(part)
            got += len(part)
        return b"".join(parts)


def file_fingerprint(path: Path) -> str:
    """A digest of the file's first decompressed bytes: a file appended to keeps its fingerprint."""
    stream, raw = _open_binary(path)
    try:
        head = _Chunks(stream).read(_FINGERPRINT_BYTES)
    finally:
        stream.close()
        raw.close()
    return hashlib.sha256(head).hexdigest()[:16]


def _records_done(position: str | None, fingerprint: str) -> int:
    if not position:
        return 0
    count, _, seen = position.partition(" ")
    if seen != fingerprint or not count.isdigit():
        return 0
    return int(count)


class _FileSource:
    """Shared bookkeeping of file replays: key, size, progress, blocking reads on a worker thread."""

    def __init__(self, path: Path) -> None:
        self.path = path.expanduser().resolve()
        self._size = self.path.stat().st_size
        self._raw: IO[bytes] | None = None

    @property
    def stream(self) -> str:
        return f"file:{self.path}"

    @property
    def live(self) -> bool:
        return False

    @property
    def total_bytes(self) -> int | None:
        return self._size

    @property
    def bytes_read(self) -> int:
        raw = self._raw
        if raw is None or raw.closed:
            return self._size if raw is not None else 0
        return raw.tell()

    def origin(self, record: int) -> str:
        return f"{self.path}:{record}"


class JsonLinesFile(_FileSource):
    """A file of one JSON event per line, optionally gzip-compressed; blank lines are not events."""

    async def deliveries(self, position: str | None) -> AsyncIterator[Delivery]:
        fingerprint = await asyncio.to_thread(file_fingerprint, self.path)
        skip = _records_done(position, fingerprint)
        stream, raw = await asyncio.to_thread(_open_binary, self.path)
        self._raw = raw
        chunks = _Chunks(stream)
        try:
            line_no = 0
            rest = b""  # the start of a line whose end is in the next chunk
            at_start = True
            while True:
                chunk = await asyncio.to_thread(chunks.read)
                if at_start:
                    chunk = chunk.removeprefix(_BOM)  # an editor's byte order mark is no part of the event
                    at_start = False
                lines = (rest + chunk).split(b"\n")
                rest = lines.pop()
                if not chunk:
                    # At the end of the file a last line without a line end is still a line; after damage
                    # it is a record cut in two, left unread.
                    if rest and chunks.damage is None:
                        lines.append(rest)
                    rest = b""
                first = line_no + 1
                line_no += len(lines)
                if first <= skip:
                    lines = lines[skip - first + 1 :] if line_no > skip else []
                    first = skip + 1
                payloads: list[bytes | str] = [line.removesuffix(b"\r") for line in lines]
                if payloads:
                    yield Delivery(
                        payloads, f"{line_no} {fingerprint}", first_record=first, damage=chunks.damage
                    )
                elif not chunk and chunks.damage is not None:
                    yield Delivery([], None, damage=chunks.damage)
                if not chunk:
                    return
        finally:
            stream.close()
            raw.close()


class SSEFile(_FileSource):
    """A capture of raw SSE text (`event:`, `id:`, `data:` lines), optionally gzip-compressed."""

    def origin(self, record: int) -> str:
        return f"{self.path}#{record}"

    async def deliveries(self, position: str | None) -> AsyncIterator[Delivery]:
        fingerprint = await asyncio.to_thread(file_fingerprint, self.path)
        skip = _records_done(position, fingerprint)
        stream, raw = await asyncio.to_thread(_open_binary, self.path)
        self._raw = raw
        decoder = SSEDecoder()
        chunks = _Chunks(stream)
        done = 0
        try:
            while True:
                chunk = await asyncio.to_thread(chunks.read)
                # A capture may end without the blank line that dispatches its last event. Unlike a dropped
                # connection (where §9.2.6 discards it) the end of a file is the end of what was recorded,
                # so the pending event is dispatched; a truncated one is then quarantined as malformed.
                # After damage, though, the pending event is known to be cut short and is left unread.
                if chunk:
                    events = decoder.feed(chunk)
                else:
                    events = decoder.feed(b"\n\n") if chunks.damage is None else []
                messages: list[bytes | str] = [e.data for e in events if e.event == "message" and e.data]
                first = done + 1
                done += len(messages)
                if first <= skip:
                    messages = messages[skip - first + 1 :] if done > skip else []
                    first = skip + 1
                if messages:
                    yield Delivery(
                        messages, f"{done} {fingerprint}", first_record=first, damage=chunks.damage
                    )
                elif not chunk and chunks.damage is not None:
                    yield Delivery([], None, damage=chunks.damage)
                if not chunk:
                    return
        finally:
            stream.close()
            raw.close()


def is_sse_capture(path: Path) -> bool:
    """Whether a file is replayed as SSE text (`.sse[.gz]`) rather than JSON Lines (anything else)."""
    return path.name.lower().removesuffix(".gz").endswith(".sse")


def open_file_source(path: Path) -> JsonLinesFile | SSEFile:
    """The replay source for a file: SSE text for `.sse[.gz]`, JSON Lines otherwise."""
    return SSEFile(path) if is_sse_capture(path) else JsonLinesFile(path)
