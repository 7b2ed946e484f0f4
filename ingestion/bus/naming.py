"""The bus's vocabulary, as pure functions: which engine a `BUS_URL` names, and the names used on it.

One stream (JetStream) or topic (Kafka) carries every wiki's events; the wiki's database name is in the
JetStream subject and is the Kafka key, so a wiki's events keep their order within a partition.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

STREAM_NAME = "TESTON_RECENTCHANGE"
SUBJECT_PREFIX = "teston.recentchange"
TOPIC = "teston.recentchange"
# One durable consumer (JetStream) / consumer group (Kafka) shared by every sink: each message goes to one.
CONSUMER_NAME = "teston-sink"
MESSAGE_ID_HEADER = "Nats-Msg-Id"
MAX_REPLICAS = 3
# What a subject token may hold: `.` separates tokens, `*` and `>` are wildcards, spaces end the subject.
_UNSAFE_TOKEN = re.compile(r"[^A-Za-z0-9_-]")
_HOST_PORT = re.compile(r"^[A-Za-z0-9._-]+:\d{1,5}$|^\[[0-9A-Fa-f:]+\]:\d{1,5}$")


class BusEngine(StrEnum):
    NATS = "nats"
    KAFKA = "kafka"


@dataclass(frozen=True, slots=True)
class BusAddress:
    """A parsed `BUS_URL`: the engine and its servers, in the form that engine's client takes."""

    engine: BusEngine
    servers: tuple[str, ...]

    @property
    def cluster_size(self) -> int:
        return len(set(self.servers))


def parse_bus_url(value: str) -> BusAddress:
    """Parse `nats://h1:4222,nats://h2:4222` or `kafka://h1:9092,h2:9092`; ValueError says what is wrong."""
    parts = [part.strip() for part in value.split(",") if part.strip()]
    if not parts:
        raise ValueError("empty bus URL (expected nats://host:4222,... or kafka://host:9092,...)")
    scheme, sep, _ = parts[0].partition("://")
    if not sep or scheme.lower() not in {e.value for e in BusEngine}:
        raise ValueError(f"{parts[0]!r}: the bus URL must start with nats:// or kafka://")
    engine = BusEngine(scheme.lower())
    servers = []
    for part in parts:
        given_scheme, sep, rest = part.partition("://")
        if sep and given_scheme.lower() != engine.value:
            raise ValueError(f"{part!r}: every server of one bus uses the same scheme ({engine.value}://)")
        host_port = (rest if sep else part).rstrip("/")
        if not _HOST_PORT.match(host_port):
            raise ValueError(f"{part!r}: expected host:port")
        port = int(host_port.rsplit(":", 1)[1])
        if not 0 < port < 65536:
            raise ValueError(f"{part!r}: port out of range")
        servers.append(f"nats://{host_port}" if engine is BusEngine.NATS else host_port)
    return BusAddress(engine, tuple(servers))


def subject_token(wiki: str) -> str:
    """A wiki's database name as one subject token (`enwiki`; anything unsafe replaced by `_`)."""
    token = _UNSAFE_TOKEN.sub("_", wiki)
    return token or "_"


def subject_for(wiki: str) -> str:
    """The JetStream subject of a wiki's events: `teston.recentchange.<wiki db name>`."""
    return f"{SUBJECT_PREFIX}.{subject_token(wiki)}"


def stream_subjects() -> list[str]:
    """The subjects the stream captures: every wiki's."""
    return [f"{SUBJECT_PREFIX}.*"]


def stream_replicas(cluster_size: int) -> int:
    """Replicas of the stream: every server up to three (R3 survives the loss of any one)."""
    return max(1, min(MAX_REPLICAS, cluster_size))


def message_source(engine: BusEngine, location: str, position: int) -> str:
    """Where a quarantined bus message came from: `nats:TESTON_RECENTCHANGE#42`, `kafka:topic/0#17`."""
    return f"{engine.value}:{location}#{position}"
