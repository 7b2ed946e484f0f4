"""The gateway websocket: HELLO, IDENTIFY → READY + GUILD_CREATE, heartbeats, RESUME and dispatches.

Sharding follows https://discord.com/developers/docs/events/gateway#sharding: IDENTIFY's `shard`
`[shard_id, shard_count]` (default `[0, 1]`) makes one session per shard; a guild's events go only to
the session of shard `(guild_id >> 22) % shard_count`, direct messages to shard 0.

Opcodes and close codes follow https://discord.com/developers/docs/topics/opcodes-and-status-codes.
Transport compression follows https://discord.com/developers/docs/events/gateway#transport-compression:
with `compress=zlib-stream` every frame is the next chunk of one zlib stream, flushed with
Z_SYNC_FLUSH so each payload ends in 00 00 ff ff.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import zlib
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from aiohttp import WSMsgType, web

from .models import PRIVILEGED_INTENTS, Intent
from .payloads import guild_create_payload, guild_members_chunk_payload, ready_payload
from .world import World

log = logging.getLogger(__name__)

# Every intent bit Discord defines today (0 through 25); anything above is invalid.
KNOWN_INTENTS = (1 << 26) - 1

# Application flags advertising which privileged intents the application may use
# (https://discord.com/developers/docs/resources/application#application-object-application-flags).
_LIMITED_FLAG_FOR_INTENT = {
    Intent.GUILD_PRESENCES: 1 << 13,
    Intent.GUILD_MEMBERS: 1 << 15,
    Intent.MESSAGE_CONTENT: 1 << 19,
}


class Op(IntEnum):
    DISPATCH = 0
    HEARTBEAT = 1
    IDENTIFY = 2
    PRESENCE_UPDATE = 3
    VOICE_STATE_UPDATE = 4
    RESUME = 6
    RECONNECT = 7
    REQUEST_GUILD_MEMBERS = 8
    INVALID_SESSION = 9
    HELLO = 10
    HEARTBEAT_ACK = 11


class Close(IntEnum):
    UNKNOWN_OPCODE = 4001
    DECODE_ERROR = 4002
    NOT_AUTHENTICATED = 4003
    AUTHENTICATION_FAILED = 4004
    ALREADY_AUTHENTICATED = 4005
    INVALID_SHARD = 4010
    INVALID_API_VERSION = 4012
    INVALID_INTENTS = 4013
    DISALLOWED_INTENTS = 4014


def application_flags(allowed_privileged: int) -> int:
    flags = 0
    for intent, flag in _LIMITED_FLAG_FOR_INTENT.items():
        if allowed_privileged & intent:
            flags |= flag
    return flags


class Connection:
    """One websocket, with its own zlib stream when the client asked for transport compression."""

    def __init__(self, ws: web.WebSocketResponse, compress: str | None, close_codes: list[int]) -> None:
        self.ws = ws
        self._close_codes = close_codes
        self._zlib = zlib.compressobj() if compress == "zlib-stream" else None
        # Compression state and frame order must agree, so compress+send happens under one lock.
        self._lock = asyncio.Lock()

    async def send(self, payload: dict[str, Any]) -> None:
        text = json.dumps(payload, separators=(",", ":"))
        async with self._lock:
            if self.ws.closed:
                return
            if self._zlib is None:
                await self.ws.send_str(text)
            else:
                data = self._zlib.compress(text.encode()) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
                await self.ws.send_bytes(data)

    async def close(self, code: int, reason: str) -> None:
        log.info("gateway: closing with %s (%s)", code, reason)
        self._close_codes.append(code)
        await self.ws.close(code=code, message=reason.encode())


@dataclass
class Session:
    """What IDENTIFY established; outlives a single websocket so RESUME can replay missed events."""

    id: str
    intents: int
    identify: dict[str, Any]
    seq: int = 0
    sent: list[dict[str, Any]] = field(default_factory=list)
    connection: Connection | None = None
    resumes: int = 0
    shard: tuple[int, int] = (0, 1)  # (shard_id, shard_count)


class Gateway:
    def __init__(
        self,
        world: World,
        *,
        token: str,
        allowed_privileged_intents: int,
        heartbeat_interval_ms: int,
        recommended_shards: int = 1,
    ) -> None:
        self.world = world
        self.recommended_shards = recommended_shards
        self.token = token
        self.allowed_privileged_intents = allowed_privileged_intents
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.url = ""  # set by the server once it knows its port
        self.sessions: dict[int, Session] = {}  # by shard id
        # Set once every shard of the identified shard count has a session.
        self.identified = asyncio.Event()
        self.heartbeats = 0
        self.presence_updates: list[dict[str, Any]] = []
        self.close_codes: list[int] = []  # codes the fake closed connections with, in order
        self.compression: list[str | None] = []  # the `compress` query of each connection
        self._connections: set[Connection] = set()
        self._dispatch_lock = asyncio.Lock()

    @property
    def session(self) -> Session | None:
        """The session of shard 0 (the only one of an unsharded bot)."""
        return self.sessions.get(0)

    @property
    def shard_count(self) -> int:
        return next(iter(self.sessions.values())).shard[1] if self.sessions else 1

    def shard_of(self, guild_id: int | None) -> int:
        """The shard a guild's events go to (direct messages: shard 0)."""
        return 0 if guild_id is None else (guild_id >> 22) % self.shard_count

    def session_for(self, guild_id: int | None) -> Session | None:
        return self.sessions.get(self.shard_of(guild_id))

    @property
    def intents(self) -> int:
        if self.session is None:
            raise RuntimeError("fake Discord: no bot has identified on the gateway yet")
        return self.session.intents

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send a DISPATCH to the shard of the event's guild, with that session's next sequence number."""
        guild_id = data.get("id") if event == "GUILD_CREATE" else data.get("guild_id")
        shard = self.shard_of(None if guild_id is None else int(guild_id))
        session = self.sessions.get(shard)
        if session is None:
            raise RuntimeError(
                f"fake Discord: cannot dispatch {event}, no bot has identified on shard {shard}"
            )
        await self._send(session, event, data)

    async def _send(self, session: Session, event: str, data: dict[str, Any]) -> None:
        """Send a DISPATCH with the session's next sequence number (kept for RESUME if offline)."""
        # Numbering and sending happen under one lock so frames leave in sequence order even when
        # a test and a REST handler dispatch at the same time.
        async with self._dispatch_lock:
            session.seq += 1
            payload = {"op": int(Op.DISPATCH), "d": data, "s": session.seq, "t": event}
            session.sent.append(payload)
            if session.connection is not None:
                await session.connection.send(payload)

    async def request_reconnect(self) -> None:
        """Ask the client to reconnect and RESUME (op 7), as Discord does before moving a session."""
        if self.session is None or self.session.connection is None:
            raise RuntimeError("fake Discord: no gateway connection to reconnect")
        await self.session.connection.send({"op": int(Op.RECONNECT), "d": None, "s": None, "t": None})

    async def close_all(self) -> None:
        for connection in list(self._connections):
            await connection.close(1001, "fake Discord shutting down")

    # -- the websocket handler -----------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        compress = request.query.get("compress")
        self.compression.append(compress)
        if compress not in (None, "zlib-stream"):
            # zstd-stream needs a zstd library the fake does not depend on; plain text frames are
            # still valid gateway traffic, so the client keeps working.
            log.warning("gateway: compress=%s not modelled, sending uncompressed text frames", compress)
        connection = Connection(ws, compress if compress == "zlib-stream" else None, self.close_codes)
        self._connections.add(connection)
        try:
            if request.query.get("v", "10") != "10" or request.query.get("encoding", "json") != "json":
                await connection.close(Close.INVALID_API_VERSION, "only v=10&encoding=json is modelled")
                return ws
            await connection.send(
                {
                    "op": int(Op.HELLO),
                    "d": {"heartbeat_interval": self.heartbeat_interval_ms},
                    "s": None,
                    "t": None,
                }
            )
            await self._receive(connection)
        finally:
            self._connections.discard(connection)
            for session in self.sessions.values():
                if session.connection is connection:
                    session.connection = None
        return ws

    async def _receive(self, connection: Connection) -> None:
        session: Session | None = None
        async for message in connection.ws:
            if message.type is not WSMsgType.TEXT:
                if message.type is WSMsgType.BINARY:
                    await connection.close(Close.DECODE_ERROR, "binary frames are not modelled")
                return
            try:
                payload = json.loads(message.data)
                op = Op(payload["op"])
            except (ValueError, KeyError, TypeError):
                await connection.close(Close.DECODE_ERROR, "Error while decoding payload.")
                return
            data = payload.get("d")
            if op is Op.HEARTBEAT:
                self.heartbeats += 1
                await connection.send({"op": int(Op.HEARTBEAT_ACK), "d": None, "s": None, "t": None})
            elif op is Op.IDENTIFY:
                if session is not None:
                    await connection.close(Close.ALREADY_AUTHENTICATED, "Already authenticated.")
                    return
                session = await self._identify(connection, data or {})
                if session is None:
                    return
            elif op is Op.RESUME:
                # On failure the client gets INVALID_SESSION and closes this socket itself.
                session = await self._resume(connection, data or {})
            elif session is None:
                await connection.close(Close.NOT_AUTHENTICATED, "Not authenticated.")
                return
            elif op is Op.PRESENCE_UPDATE:
                self.presence_updates.append(data)
            elif op is Op.REQUEST_GUILD_MEMBERS:
                await self._send_members(session, data or {})
            elif op is Op.VOICE_STATE_UPDATE:
                log.warning("gateway: voice is not modelled; ignoring %s", data)
            else:
                await connection.close(Close.UNKNOWN_OPCODE, f"Unknown opcode {int(op)}.")
                return

    def _token_ok(self, token: object) -> bool:
        return token in (self.token, f"Bot {self.token}")

    async def _identify(self, connection: Connection, data: dict[str, Any]) -> Session | None:
        if not self._token_ok(data.get("token")):
            await connection.close(Close.AUTHENTICATION_FAILED, "Authentication failed.")
            return None
        intents = data.get("intents")
        if not isinstance(intents, int) or intents < 0 or intents & ~KNOWN_INTENTS:
            await connection.close(Close.INVALID_INTENTS, "Invalid intent(s).")
            return None
        if intents & PRIVILEGED_INTENTS & ~self.allowed_privileged_intents:
            await connection.close(Close.DISALLOWED_INTENTS, "Disallowed intent(s).")
            return None
        shard = data.get("shard", [0, 1])
        if not (
            isinstance(shard, list)
            and len(shard) == 2
            and all(isinstance(n, int) for n in shard)
            and 0 <= shard[0] < shard[1]
            and (not self.sessions or shard[1] == self.shard_count)
        ):
            await connection.close(Close.INVALID_SHARD, "Invalid shard.")
            return None
        session = Session(
            id=secrets.token_hex(16),
            intents=intents,
            identify=data,
            connection=connection,
            shard=(shard[0], shard[1]),
        )
        self.sessions[shard[0]] = session
        log.info("gateway: shard %s identified with intents %s", shard, intents)
        guilds = tuple(g for g in self.world.guilds() if self.shard_of(g.id) == shard[0])
        await self._send(
            session,
            "READY",
            ready_payload(
                self.world,
                session_id=session.id,
                resume_gateway_url=self.url,
                application_flags=application_flags(self.allowed_privileged_intents),
                guilds=guilds,
                shard=(shard[0], shard[1]) if "shard" in data else None,
            ),
        )
        if intents & Intent.GUILDS:
            for guild in guilds:
                await self._send(
                    session, "GUILD_CREATE", guild_create_payload(self.world, guild, intents=intents)
                )
        if len(self.sessions) == shard[1]:
            self.identified.set()
        return session

    async def _resume(self, connection: Connection, data: dict[str, Any]) -> Session | None:
        session = next((s for s in self.sessions.values() if s.id == data.get("session_id")), None)
        if session is None or not self._token_ok(data.get("token")):
            # d=false: the session cannot be resumed, the client must IDENTIFY afresh.
            await connection.send({"op": int(Op.INVALID_SESSION), "d": False, "s": None, "t": None})
            return None
        session.connection = connection
        session.resumes += 1
        last_seen = int(data.get("seq") or 0)
        for payload in session.sent:
            if payload["s"] > last_seen:
                await connection.send(payload)
        await self._send(session, "RESUMED", {"_trace": ["fakediscord"]})
        return session

    async def _send_members(self, session: Session, data: dict[str, Any]) -> None:
        user_ids = data.get("user_ids")
        if isinstance(user_ids, int | str):
            user_ids = [user_ids]
        await self._send(
            session,
            "GUILD_MEMBERS_CHUNK",
            guild_members_chunk_payload(
                self.world,
                guild_id=int(data.get("guild_id") or self.world.guild.id),
                query=str(data.get("query") or ""),
                limit=int(data.get("limit") or 0),
                user_ids=None if user_ids is None else [int(u) for u in user_ids],
                nonce=data.get("nonce"),
            ),
        )
