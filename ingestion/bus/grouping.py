"""Several events in one bus message, as pure functions: grouped on the way in, split on the way out.

Every message costs the bus the same whatever it carries (stored and replicated, acknowledged to the
ingester, delivered to a sink, acknowledged by it), so under a backlog a wiki's events of one batch travel
together: their JSON texts one per line, the count in the `TestON-Events` header. A message without that
header holds one event (what every earlier publisher sent), and a lone event is still sent that way.

The id of a message of several events is a digest of all their ids, so the same group sent again has the
same id (the bus's duplicate window drops it), and two different groups never share one, whatever their
first event (a group is never dropped for a copy it is not). PostgreSQL's primary key drops the events
another group already brought.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from ingestion.bus.engine import OutgoingMessage

EVENTS_HEADER = "TestON-Events"
# Well below the servers' own limits (NATS: 1 MiB a message by default; Kafka: 1 MB).
MAX_GROUP_EVENTS = 250
MAX_GROUP_BYTES = 512 * 1024
_SEPARATOR = b"\n"


def group_id(event_ids: Iterable[str]) -> str:
    """The message id of a group: a digest of its events' ids, in order."""
    digest = hashlib.blake2b(digest_size=16)
    for event_id in event_ids:
        digest.update(event_id.encode())
        digest.update(b",")
    return "g-" + digest.hexdigest()


@dataclass(slots=True)
class _Group:
    """A wiki's events gathered so far: their ids and JSON texts, and the bytes they take joined."""

    ids: list[str] = field(default_factory=list)
    payloads: list[bytes] = field(default_factory=list)
    size: int = 0

    def add(self, event_id: str, payload: bytes) -> None:
        self.ids.append(event_id)
        self.payloads.append(payload)
        self.size += len(payload) + len(_SEPARATOR)

    def message(self, wiki: str) -> OutgoingMessage:
        if len(self.payloads) == 1:
            return OutgoingMessage(wiki, self.ids[0], self.payloads[0])
        payload = _SEPARATOR.join(self.payloads)
        return OutgoingMessage(wiki, group_id(self.ids), payload, events=len(self.payloads))


def group_events(
    routed: Iterable[tuple[str, str, bytes]],
    *,
    max_events: int = MAX_GROUP_EVENTS,
    max_bytes: int = MAX_GROUP_BYTES,
) -> list[OutgoingMessage]:
    """One message per wiki (more when it has over `max_events` or `max_bytes`), its events in arrival order.

    `routed` yields each event's wiki, id and JSON text. A text holding a newline (JSON allows one between
    tokens) goes alone, so splitting a group on newlines always gives back its events.
    """
    open_groups: dict[str, _Group] = {}
    messages: list[OutgoingMessage] = []
    for wiki, event_id, payload in routed:
        if _SEPARATOR in payload:
            messages.append(OutgoingMessage(wiki, event_id, payload))
            continue
        group = open_groups.get(wiki)
        if group is not None and (
            len(group.ids) >= max_events or group.size + len(payload) + len(_SEPARATOR) > max_bytes
        ):
            messages.append(group.message(wiki))
            group = None
        if group is None:
            group = open_groups[wiki] = _Group()
        group.add(event_id, payload)
    messages.extend(group.message(wiki) for wiki, group in open_groups.items())
    return messages


def events_of(payload: bytes, events: int) -> list[bytes]:
    """The events' JSON texts in a message that says it holds `events` of them (1: the payload as is).

    A group whose line count differs from its header is returned line by line all the same: each line is
    parsed on its own, and what does not parse is quarantined, so nothing is dropped unseen.
    """
    if events <= 1:
        return [payload]
    return payload.split(_SEPARATOR)


def header_events(value: str | bytes | None) -> int:
    """The `TestON-Events` header's count; 1 when absent or unreadable."""
    if value is None:
        return 1
    try:
        count = int(value)
    except ValueError:
        return 1
    return max(count, 1)
