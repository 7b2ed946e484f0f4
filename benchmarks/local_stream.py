"""A local stand-in for EventStreams: serves SSE over HTTP at full speed from a file, or paced.

`python -m benchmarks.local_stream --file events.sse --port 8123` serves the file to each connection as
fast as the socket takes it, then closes the connection (as EventStreams does when it restarts). It runs
in a process of its own so that serving never competes with the ingester for the interpreter lock.

`PacedStream` emits events at a steady rate from a thread and records when each one left, for the
freshness benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

_RESPONSE_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/event-stream; charset=utf-8\r\n"
    b"Cache-Control: no-cache\r\n"
    b"Connection: close\r\n\r\n"
)
_CHUNK = 1 << 16


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


async def _serve_file(path: Path, port: int) -> None:
    body = await asyncio.to_thread(path.read_bytes)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await _read_request(reader)
            writer.write(_RESPONSE_HEAD + b":ok\n\n")
            view = memoryview(body)
            for start in range(0, len(body), _CHUNK):
                writer.write(view[start : start + _CHUNK])
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


@contextlib.contextmanager
def file_stream_process(path: Path) -> Iterator[str]:
    """Serve `path` from a child process; yield the stream URL; stop the child after."""
    port = free_port()
    child = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.local_stream", "--file", str(path), "--port", str(port)],
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}/v2/stream/recentchange"
    finally:
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


class PacedStream:
    """Serves `lines` at `rate` events/s to one connection at a time; `sent` maps meta.id to time.time()."""

    def __init__(self, lines: Sequence[str], rate: float) -> None:
        self.lines = lines
        self.rate = rate
        self.port = free_port()
        self.sent: dict[str, float] = {}
        self.done = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = asyncio.Event()
        self._thread = threading.Thread(target=self._run, name="paced-stream", daemon=True)
        self._ready = threading.Event()
        self._next = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v2/stream/recentchange"

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self._ready.set()
        async with server:
            await self._stop.wait()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await _read_request(reader)
            writer.write(_RESPONSE_HEAD + b":ok\n\n")
            await writer.drain()
            start = time.monotonic() - self._next / self.rate
            while self._next < len(self.lines):
                index = self._next
                delay = start + index / self.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                line = self.lines[index]
                meta_id = json.loads(line)["meta"]["id"]
                frame = f'event: message\nid: [{{"offset":{index}}}]\ndata: {line}\n\n'.encode()
                self.sent[meta_id] = time.time()
                writer.write(frame)
                await writer.drain()
                self._next = index + 1
            self.done.set()
            await self._stop.wait()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def __enter__(self) -> PacedStream:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve an SSE file at full speed on 127.0.0.1.")
    parser.add_argument("--file", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_file(args.file, args.port))


if __name__ == "__main__":
    main()
