"""The messages a batch's rows become on the bus, and the events a sink reads back out of them."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import pytest

from ingestion.bus.engine import ReceivedMessage
from ingestion.bus.grouping import (
    MAX_GROUP_EVENTS,
    events_of,
    group_events,
    group_id,
    header_events,
)
from ingestion.bus.publisher import outgoing_messages
from ingestion.bus.sink import messages_to_fetch, sink_batch
from ingestion.copy_rows import CopyRows
from ingestion.events import ChangeRow, parse_event
from teston.core.wikis import WikiCatalog
from tests.conftest import DATA_DIR

CAPTURE = DATA_DIR / "2021-08-27_all-wikis_1950.jsonl"


def _capture_rows() -> tuple[CopyRows, list[dict[str, Any]]]:
    catalog = WikiCatalog.load()
    lines = CAPTURE.read_bytes().splitlines()
    rows = CopyRows()
    parsed = [parse_event(line, catalog) for line in lines]
    for row in parsed:
        if isinstance(row, ChangeRow):
            rows.append(row)
    rows.append(next(row for row in parsed if isinstance(row, ChangeRow)))  # a copy: dropped
    events = [json.loads(line) for line in lines]
    kept = [event for event, row in zip(events, parsed, strict=True) if isinstance(row, ChangeRow)]
    return rows, kept


def test_a_batch_becomes_one_message_per_wiki_holding_its_events_in_order() -> None:
    rows, kept = _capture_rows()

    messages = outgoing_messages(rows)

    by_wiki: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in kept:
        by_wiki[str(event["wiki"])].append(event)
    assert len(kept) == len(rows) > 1900
    # A message per wiki, and one more per 250 events of a wiki; far fewer messages than events.
    assert len(messages) == sum(-(-len(events) // MAX_GROUP_EVENTS) for events in by_wiki.values())
    assert len(messages) < len(kept) / 10
    assert max(len(events) for events in by_wiki.values()) > MAX_GROUP_EVENTS
    carried: dict[str, list[object]] = defaultdict(list)
    for message in messages:
        events = [json.loads(text) for text in events_of(message.payload, message.events)]
        carried[message.wiki].extend(events)
        assert message.events == len(events) <= MAX_GROUP_EVENTS
        if message.events == 1:  # a lone event keeps its own id, as every message had before
            assert message.message_id == events[0]["meta"]["id"]
        else:
            assert message.message_id == group_id(e["meta"]["id"] for e in events)
    assert carried == by_wiki  # each wiki's events in their order
    # The JSON texts as the rows hold them, byte for byte.
    texts = [text for m in messages for text in events_of(m.payload, m.events)]
    assert sorted(t.decode() for t in texts) == sorted(rows.raw(i) for i in range(len(rows)))


def test_groups_keep_within_their_limits_and_a_text_with_a_newline_travels_alone() -> None:
    routed = [("enwiki", f"id-{i}", b'{"n": %d}' % i) for i in range(23)]
    routed.insert(5, ("enwiki", "id-nl", b'{"n":\n 99}'))
    routed.append(("dewiki", "id-de", b'{"n": 1000}'))

    messages = group_events(routed, max_events=10, max_bytes=10_000)

    assert [(m.wiki, m.events) for m in messages] == [
        ("enwiki", 1),  # the text with a newline, alone
        ("enwiki", 10),
        ("enwiki", 10),
        ("enwiki", 3),
        ("dewiki", 1),
    ]
    assert messages[0].payload == b'{"n":\n 99}'
    assert messages[0].message_id == "id-nl"
    enwiki = [text for m in messages[1:4] for text in events_of(m.payload, m.events)]
    assert enwiki == [b'{"n": %d}' % i for i in range(23)]
    assert messages[4].message_id == "id-de"

    by_bytes = group_events(routed[6:12], max_events=100, max_bytes=20)  # 8-9 bytes each, +1 a newline
    assert [m.events for m in by_bytes] == [2, 2, 2]


def test_group_ids_are_the_same_for_the_same_events_and_differ_for_any_other() -> None:
    assert group_id(["a", "b"]) == group_id(iter(["a", "b"]))
    ids = {group_id(["a", "b"]), group_id(["a", "c"]), group_id(["b", "a"]), group_id(["a", "b", "c"])}
    assert len(ids) == 4
    assert group_id(["ab"]) != group_id(["a", "b"])


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, 1), ("3", 3), (b"250", 250), ("0", 1), ("-2", 1), ("three", 1), (b"", 1)],
)
def test_the_event_count_header(header: str | bytes | None, expected: int) -> None:
    assert header_events(header) == expected


def test_a_sink_batch_reads_lone_events_and_groups_and_quarantines_one_bad_line_of_a_group() -> None:
    catalog = WikiCatalog.load()
    lines = CAPTURE.read_bytes().splitlines()[:6]
    group = b"\n".join([lines[1], b'{"meta": {"id": "broken"', lines[2]])
    canary = b'{"meta": {"domain": "canary", "id": "c1"}}'
    received = [
        ReceivedMessage(lines[0], "nats:S#1", None, None),  # no header: one event
        ReceivedMessage(group, "nats:S#2", None, None, events=3),
        ReceivedMessage(b"\n".join([lines[3], canary]), "nats:S#3", None, None, events=2),
    ]

    batch, canaries = sink_batch("sink", received, catalog)

    assert canaries == 1
    rows = batch.rows
    assert isinstance(rows, CopyRows)
    assert [json.loads(rows.raw(i)) for i in range(len(rows))] == [
        json.loads(line) for line in (lines[0], lines[1], lines[2], lines[3])
    ]
    assert [(q.source, q.payload) for q in batch.quarantined] == [("nats:S#2/1", '{"meta": {"id": "broken"')]


def test_a_sink_asks_for_about_a_batch_of_events_whatever_a_message_holds() -> None:
    assert messages_to_fetch(2000, 1.0) == 2000
    assert messages_to_fetch(2000, 40.0) == 50
    assert messages_to_fetch(2000, 0.5) == 2000
    assert messages_to_fetch(100, 250.0) == 1
