"""The bus's vocabulary, as pure functions: the names used on it (`teston.core.bus_address` parses `BUS_URL`).

One stream (JetStream) or topic (Kafka) carries every wiki's events; the wiki's database name is in the
JetStream subject and is the Kafka key, so a wiki's events keep their order within a partition.
"""

from __future__ import annotations

import re

from teston.core.bus_address import BusEngine

STREAM_NAME = "TESTON_RECENTCHANGE"
SUBJECT_PREFIX = "teston.recentchange"
TOPIC = "teston.recentchange"
# One durable consumer (JetStream) / consumer group (Kafka) shared by every sink: each message goes to one.
CONSUMER_NAME = "teston-sink"
MESSAGE_ID_HEADER = "Nats-Msg-Id"
MAX_REPLICAS = 3
# What a subject token may hold: `.` separates tokens, `*` and `>` are wildcards, spaces end the subject.
_UNSAFE_TOKEN = re.compile(r"[^A-Za-z0-9_-]")


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
