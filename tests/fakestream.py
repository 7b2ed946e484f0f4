"""A local stand-in for Wikimedia EventStreams that replays the recorded bytes of an SSE capture.

It behaves like the real service where the ingester depends on it, and misbehaves on request:
- each event is sent as recorded (`event:`, `id:`, `data:` lines), after an `:ok` comment;
- `Last-Event-ID` resumes after the first event carrying that id. Recorded ids are Kafka timestamps,
  shared by many events and not monotonic, so like EventStreams' seek-by-timestamp this re-sends some
  events the client already has: delivery is at least once, and the client must drop duplicates;
- a request whose User-Agent does not follow Wikimedia's policy (`TestON/<v> (<contact>) aiohttp/<v>`)
  gets 403, and a second concurrent connection gets 429;
- it can drop the connection (mid-event) after every N events not sent before, answer the next requests
  with injected statuses (5xx, 429), announce a `retry:` time, and pace events;
- it records every request it saw, with its headers, for tests to assert on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

USER_AGENT = re.compile(r"^TestON/\S+ \(.+\) aiohttp/\S+$")
STREAM_PATH = "/v2/stream/recentchange"


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    id: str
    meta_id: str
    block: bytes  # the event's lines, ending with the blank line that dispatches it


def read_capture(path: Path) -> list[RecordedEvent]:
    """The events of an SSE capture, split at blank lines, each with its `id:` and `meta.id`."""
    events = []
    for block in path.read_bytes().split(b"\n\n"):
        lines = block.strip(b"\n").split(b"\n")
        fields = dict(line.split(b": ", 1) for line in lines if b": " in line and not line.startswith(b":"))
        if b"data" not in fields:
            continue  # the `:ok` comment
        data = json.loads(fields[b"data"])
        events.append(
            RecordedEvent(
                id=fields[b"id"].decode(),
                meta_id=data["meta"]["id"],
                block=b"\n".join(line for line in lines if not line.startswith(b":")) + b"\n\n",
            )
        )
    return events


@dataclass(slots=True)
class SeenRequest:
    headers: dict[str, str]
    query: dict[str, str]
    status: int
    start: int = 0  # index of the first event sent


@dataclass
class FakeEventStreams:
    events: list[RecordedEvent]
    drop_every: int | None = None
    retry_ms: int | None = None
    pace: float = 0.0  # seconds between events
    heartbeat: float = 0.1
    inject_statuses: list[int] = field(default_factory=list)
    requests: list[SeenRequest] = field(default_factory=list)
    max_concurrent: int = 0
    high_water: int = 0  # events [0, high_water) have been sent at least once
    _active: int = 0
    _runner: web.AppRunner | None = None
    _closing: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get(STREAM_PATH, self._stream)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}{STREAM_PATH}"
        return self.url

    async def close(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeEventStreams:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _resume_index(self, last_event_id: str | None) -> int:
        if not last_event_id:
            return 0
        for index, event in enumerate(self.events):
            if event.id == last_event_id:
                return index + 1
        return 0  # an id the stream no longer has: like an expired retention, start from the oldest

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        seen = SeenRequest(dict(request.headers), dict(request.query), 200)
        self.requests.append(seen)
        if not USER_AGENT.match(request.headers.get("User-Agent", "")):
            seen.status = 403
            return web.Response(status=403, text="Please set a User-Agent header: see the User-Agent policy")
        if self._active:
            seen.status = 429
            return web.Response(status=429, text="Too many concurrent connections")
        if self.inject_statuses:
            seen.status = self.inject_statuses.pop(0)
            return web.Response(status=seen.status, text="injected failure")
        self._active += 1
        self.max_concurrent = max(self.max_concurrent, self._active)
        try:
            return await self._send(request, seen)
        finally:
            self._active -= 1

    async def _send(self, request: web.Request, seen: SeenRequest) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
        await response.prepare(request)
        seen.start = index = self._resume_index(request.headers.get("Last-Event-ID"))
        fresh = 0
        try:
            await response.write(b":ok\n\n")
            if self.retry_ms is not None:
                await response.write(f"retry: {self.retry_ms}\n\n".encode())
            while index < len(self.events) and not self._closing.is_set():
                block = self.events[index].block
                if self.drop_every is not None and fresh >= self.drop_every:
                    # Drop mid-event: the client must discard the half event and get it again.
                    await response.write(block[: len(block) // 2])
                    assert request.transport is not None
                    request.transport.close()
                    return response
                await response.write(block)
                if index >= self.high_water:
                    self.high_water = index + 1
                    fresh += 1
                index += 1
                if self.pace:
                    await asyncio.sleep(self.pace)
            # Like the live stream with nothing new: keep the connection, with heartbeats that also
            # reveal a client that has gone away.
            while not self._closing.is_set():
                await response.write(b":\n\n")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), self.heartbeat)
        except (ConnectionResetError, ConnectionError):
            pass
        return response
