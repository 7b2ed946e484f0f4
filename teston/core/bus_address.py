"""`BUS_URL`: which event bus engine it names, and its servers; read by the settings and the bus clients."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

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
