"""The parser's fast path (one typed decode) answers exactly as its full decode would, or not at all."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingestion import events
from ingestion.events import ChangeRow, Rejection, parse_event
from teston.core.wikis import WikiCatalog

DATA_DIR = Path(__file__).parent / "data"
CATALOG = WikiCatalog.load()


def full_decode(payload: bytes | str) -> ChangeRow | Rejection | events.Canary:
    """What `parse_event` answers without its fast path."""
    if isinstance(payload, bytes):
        return events._parse_document(payload, payload, payload.decode("utf-8"), CATALOG)
    return events._parse_document(payload, payload, payload, CATALOG)


def lines(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().split(b"\n") if line.strip()]


@pytest.mark.parametrize(
    "path", sorted(DATA_DIR.glob("*.jsonl")) + sorted((DATA_DIR / "malformed").glob("*.jsonl")), ids=str
)
def test_every_recorded_and_malformed_line_parses_as_the_full_decode_would(path: Path) -> None:
    for line in lines(path):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            continue  # refused before either decode
        assert parse_event(line, CATALOG) == full_decode(line)
        text = line.decode("utf-8")
        assert parse_event(text, CATALOG) == full_decode(text)


SAMPLES = [json.loads(line) for line in lines(DATA_DIR / "2021-08-27_all-wikis_1950.jsonl")[:100]] + [
    json.loads(line) for line in lines(DATA_DIR / "2018-03-07_wikidata_3818_old-shape.jsonl")[:50]
]
# Every field of both shapes, typed or not, and fields no event has.
FIELDS = sorted({(key,) for sample in SAMPLES for key in sample})
FIELDS += sorted({("meta", key) for sample in SAMPLES for key in sample["meta"]})
FIELDS += [("length", "old"), ("revision", "new"), ("log_params", "x"), ("unheard_of",), ("meta", "new")]
values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**18, max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([1e300, 1.5, -0.0])
    | st.text(max_size=10)
    | st.sampled_from(["canary", "\0", "00000000-0000-4000-8000-000000000000", "enwiki", "edit"]),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
# Number literals the JSON encoder never writes: beyond jsonb's range, or spelled with an exponent.
LITERALS = ["1e400000", "1E-20000", "2e3", "100000000000000000000000", "-0", "0.0"]
PLACEHOLDER = "literal placeholder"


@settings(max_examples=800, deadline=None)
@given(
    st.sampled_from(SAMPLES),
    st.lists(
        st.tuples(st.sampled_from(FIELDS), values | st.sampled_from(LITERALS).map(lambda _: PLACEHOLDER))
    ),
    st.sampled_from(LITERALS),
    st.booleans(),
)
def test_an_event_with_fields_changed_parses_as_the_full_decode_would(
    sample: dict[str, Any], changes: list[tuple[tuple[str, ...], Any]], literal: str, ascii_only: bool
) -> None:
    event = json.loads(json.dumps(sample))
    for path, value in changes[:3]:
        target = event
        for key in path[:-1]:
            if not isinstance(target.get(key), dict):
                target[key] = {}
            target = target[key]
        target[path[-1]] = value
    payload = json.dumps(event, ensure_ascii=ascii_only).replace(json.dumps(PLACEHOLDER), literal)
    assert parse_event(payload, CATALOG) == full_decode(payload)
    encoded = payload.encode("utf-8")
    assert parse_event(encoded, CATALOG) == full_decode(encoded)
