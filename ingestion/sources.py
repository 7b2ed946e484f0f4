"""Where events come from: the live stream or a file replayed to its end, behind one small interface.

A source yields `Delivery`s, each a run of payloads with the position to store after them. The live
stream's position is its `Last-Event-ID`; a file's is how many records were consumed plus a fingerprint
of the file's beginning, so a killed replay resumes where it committed and a different file at the same
path starts over (the primary key makes starting over harmless anyway).
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol, cast

from ingestion.sse import SSEDecoder

READ_SIZE = 1 << 20
_FINGERPRINT_BYTES = 1 << 16
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True, slots=True)
class Delivery:
    """Payloads received together; `position` is the cursor value once all of them are committed."""

    payloads: list[bytes | str]
    position: str | None
    # Index of the first payload within its source (its 1-based line for JSON Lines), for quarantine rows.
    first_record: int = 0
    # The first delivery after (re)connecting with a resume point: where a retention gap would show.
    resumed: bool = False


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


def file_fingerprint(path: Path) -> str:
    """A digest of the file's first decompressed bytes: a file appended to keeps its fingerprint."""
    stream, raw = _open_binary(path)
    try:
        head = stream.read(_FINGERPRINT_BYTES)
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
        try:
            line_no = 0
            while True:
                lines = await asyncio.to_thread(stream.readlines, READ_SIZE)
                if not lines:
                    return
                first = line_no + 1
                line_no += len(lines)
                if line_no <= skip:
                    continue
                if first <= skip:
                    lines = lines[skip - first + 1 :]
                    first = skip + 1
                payloads: list[bytes | str] = [line.rstrip(b"\r\n") for line in lines]
                yield Delivery(payloads, f"{line_no} {fingerprint}", first_record=first)
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
        done = 0
        try:
            while True:
                chunk = await asyncio.to_thread(stream.read, READ_SIZE)
                # A capture may end without the blank line that dispatches its last event. Unlike a dropped
                # connection (where §9.2.6 discards it) the end of a file is the end of what was recorded,
                # so the pending event is dispatched; a truncated one is then quarantined as malformed.
                events = decoder.feed(chunk) if chunk else decoder.feed(b"\n\n")
                messages: list[bytes | str] = [e.data for e in events if e.event == "message" and e.data]
                first = done + 1
                done += len(messages)
                if messages and done > skip:
                    if first <= skip:
                        messages = messages[skip - first + 1 :]
                        first = skip + 1
                    yield Delivery(messages, f"{done} {fingerprint}", first_record=first)
                if not chunk:
                    return
        finally:
            stream.close()
            raw.close()


def open_file_source(path: Path) -> JsonLinesFile | SSEFile:
    """The replay source for a file: SSE text for `.sse[.gz]`, JSON Lines otherwise."""
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".sse"):
        return SSEFile(path)
    return JsonLinesFile(path)
