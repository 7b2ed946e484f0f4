"""Event → row mapping on every recorded event, a corpus of malformed input, and fuzzing."""

from __future__ import annotations

import collections
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingestion.events import (
    CANARY,
    INGEST_COLUMNS,
    MAX_REJECTED_PAYLOAD,
    Canary,
    ChangeRow,
    Rejection,
    parse_event,
)
from ingestion.sse import SSEDecoder
from teston.core.schema import RECENT_CHANGE_COLUMNS
from teston.core.wikis import WikiCatalog

DATA_DIR = Path(__file__).parent / "data"
MALFORMED_DIR = DATA_DIR / "malformed"
CAPTURES = {
    "2018-03-07_wikidata_3818_old-shape.jsonl": 3818,
    "2021-08-27_all-wikis_1950.jsonl": 1950,
    "2023-07-29_enwiki_100.jsonl": 100,
    "2025-05-03_sample_144.jsonl": 144,
}
CATALOG = WikiCatalog.load()

INT32 = range(-(2**31), 2**31)
INT64 = range(-(2**63), 2**63)


def capture_lines(name: str) -> list[bytes]:
    return (DATA_DIR / name).read_bytes().splitlines()


def parse(payload: bytes | str) -> ChangeRow | Rejection | Canary:
    return parse_event(payload, CATALOG)


def parse_row(payload: bytes | str) -> ChangeRow:
    result = parse(payload)
    assert isinstance(result, ChangeRow), result
    return result


def at(hour: int, minute: int, second: int, *, day: tuple[int, int, int]) -> datetime:
    return datetime(*day, hour, minute, second, tzinfo=UTC)


def assert_storable(row: ChangeRow) -> None:
    """What PostgreSQL needs of a row: no U+0000 in text, integers in range, `raw` a JSON object."""
    for name, value in zip(INGEST_COLUMNS, row, strict=True):
        if isinstance(value, str):
            assert "\0" not in value, name
            value.encode("utf-8")  # no lone surrogates
    for value in (row.namespace, row.length_old, row.length_new):
        assert value is None or value in INT32
    for value in (row.revision_old, row.revision_new, row.rcid):
        assert value is None or value in INT64
    assert row.event_time.tzinfo is UTC
    assert isinstance(row.event_id, uuid.UUID)
    assert isinstance(row.bot, bool)
    document = json.loads(row.raw)
    assert isinstance(document, dict)
    assert "\0" not in json.dumps(document, ensure_ascii=False)


def test_change_row_fields_are_the_ingest_columns() -> None:
    assert ChangeRow._fields == INGEST_COLUMNS
    assert tuple(c for c in RECENT_CHANGE_COLUMNS if c != "received_at") == INGEST_COLUMNS


# -- the recorded captures ---------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "count"), CAPTURES.items())
def test_every_recorded_event_becomes_a_row(name: str, count: int) -> None:
    lines = capture_lines(name)
    assert len(lines) == count
    for line in lines:
        row = parse_row(line)
        event = json.loads(line)
        assert row.raw == line.decode()  # kept as received
        assert row.event_id == uuid.UUID(event["meta"]["id"])
        assert row.event_time == datetime.fromtimestamp(event["timestamp"], UTC)
        assert row.wiki == event["wiki"]
        assert row.server_name == event["server_name"]
        assert (row.type, row.namespace, row.title, row.user_name, row.bot, row.comment) == (
            event["type"],
            event["namespace"],
            event["title"],
            event["user"],
            event["bot"],
            event["comment"],
        )
        assert row.rcid == event.get("id")
        assert_storable(row)
        assert parse(line.decode()) == row  # text and bytes alike


def test_the_2021_capture_by_type_and_bot() -> None:
    rows = [parse_row(line) for line in capture_lines("2021-08-27_all-wikis_1950.jsonl")]
    assert collections.Counter(row.type for row in rows) == {
        "edit": 1230,
        "categorize": 586,
        "log": 93,
        "new": 39,
        "142": 2,
    }
    assert collections.Counter(row.bot for row in rows) == {True: 872, False: 1078}
    assert len({row.wiki for row in rows}) == 73
    assert len({row.event_id for row in rows}) == 1950
    # Fields of one type only: length and revision for edit and new, log fields for log.
    for row in rows:
        has_sizes = row.length_new is not None and row.revision_new is not None
        assert has_sizes == (row.type in ("edit", "new")), row
        assert (row.length_old is None) == (row.type != "edit"), row
        assert (row.log_type is not None) == (row.type == "log"), row
    assert sum(row.rcid is None for row in rows) == 50


def capture_row(name: str, index: int) -> tuple[ChangeRow, str]:
    line = capture_lines(name)[index]
    return parse_row(line), line.decode()


def test_an_edit_on_korean_wikipedia() -> None:
    row, raw = capture_row("2021-08-27_all-wikis_1950.jsonl", 0)
    assert row == ChangeRow(
        event_time=at(13, 20, 17, day=(2021, 8, 27)),
        event_id=uuid.UUID("59d43ae0-e4e9-4197-990d-52723364e505"),
        wiki="kowiki",
        server_name="ko.wikipedia.org",
        lang="ko",
        project="wikipedia",
        type="edit",
        namespace=0,
        title="2005년 한국시리즈",
        user_name="222.101.92.235",
        bot=False,
        minor=False,
        patrolled=None,
        length_old=8159,
        length_new=8179,
        revision_old=30137382,
        revision_new=30137384,
        rcid=56921597,
        log_type=None,
        log_action=None,
        comment="/* 1차전 */",
        raw=raw,
    )


def test_the_type_142_is_kept_as_it_is() -> None:
    row, raw = capture_row("2021-08-27_all-wikis_1950.jsonl", 94)
    assert row._replace(comment=None) == ChangeRow(
        event_time=at(13, 20, 19, day=(2021, 8, 27)),
        event_id=uuid.UUID("4c481c2b-efcb-4d26-ba29-1c133dfa6ea1"),
        wiki="frwiki",
        server_name="fr.wikipedia.org",
        lang="fr",
        project="wikipedia",
        type="142",
        namespace=2600,
        title="Sujet:Wf9mhwn4swntoqso",
        user_name="Langladure",
        bot=False,
        minor=None,
        patrolled=None,
        length_old=None,
        length_new=None,
        revision_old=None,
        revision_new=None,
        rcid=448151125,
        log_type=None,
        log_action=None,
        comment=None,
        raw=raw,
    )
    assert row.comment is not None
    assert row.comment.startswith('Langladure commented on "Rangers, bâtons de marche et castors."')


def test_a_new_page_without_old_length_or_revision() -> None:
    row, raw = capture_row("2021-08-27_all-wikis_1950.jsonl", 66)
    assert '"length":{"new":2526}' in raw  # `old` absent
    assert row == ChangeRow(
        event_time=at(13, 20, 18, day=(2021, 8, 27)),
        event_id=uuid.UUID("e71e7ff8-6243-42ad-b6ae-12af8a28a517"),
        wiki="cewiki",
        server_name="ce.wikipedia.org",
        lang="ce",
        project="wikipedia",
        type="new",
        namespace=0,
        title="Наьджаьфали (Заьрдабан кӀошт)",
        user_name="CheWikibot",
        bot=True,
        minor=False,
        patrolled=True,
        length_old=None,
        length_new=2526,
        revision_old=None,
        revision_new=6513212,
        rcid=53287181,
        log_type=None,
        log_action=None,
        comment="Азербайджан",
        raw=raw,
    )


def test_a_log_event_with_log_params_an_array() -> None:
    row, raw = capture_row("2021-08-27_all-wikis_1950.jsonl", 411)
    assert json.loads(raw)["log_params"] == []
    assert row == ChangeRow(
        event_time=at(13, 20, 28, day=(2021, 8, 27)),
        event_id=uuid.UUID("1baa544f-8186-4022-bf4e-3849e5352632"),
        wiki="dewiki",
        server_name="de.wikipedia.org",
        lang="de",
        project="wikipedia",
        type="log",
        namespace=2,
        title="Benutzer:Kogge/Singulisphaera",
        user_name="Johannnes89",
        bot=False,
        minor=None,
        patrolled=None,
        length_old=None,
        length_new=None,
        revision_old=None,
        revision_new=None,
        rcid=310841367,
        log_type="delete",
        log_action="delete",
        comment="Verschieberest: einziger Bearbeiter: [[Special:Contributions/Kogge|Kogge]]",
        raw=raw,
    )


def test_a_log_event_without_rcid() -> None:
    row, raw = capture_row("2021-08-27_all-wikis_1950.jsonl", 47)
    assert "id" not in json.loads(raw)
    assert (row.type, row.rcid) == ("log", None)


def test_the_2018_shape() -> None:
    row, raw = capture_row("2018-03-07_wikidata_3818_old-shape.jsonl", 0)
    event = json.loads(raw)
    assert "$schema" not in event
    assert "stream" not in event["meta"]
    assert event["meta"]["dt"].endswith("+00:00")
    assert row == ChangeRow(
        event_time=at(16, 16, 17, day=(2018, 3, 7)),
        event_id=uuid.UUID("dd8c5690-2222-11e8-a2ad-1418776134f3"),
        wiki="wikidatawiki",
        server_name="www.wikidata.org",
        lang=None,
        project="wikidata",
        type="edit",
        namespace=0,
        title="Q3855005",
        user_name="MisterSynergy",
        bot=False,
        minor=False,
        patrolled=True,
        length_old=1007,
        length_new=1438,
        revision_old=645091281,
        revision_new=645091312,
        rcid=680514367,
        log_type=None,
        log_action=None,
        comment="/* wbcreateclaim-create:1| */ [[Property:P31]]: [[Q46190676]], #petscan",
        raw=raw,
    )


def test_a_2018_new_item_with_null_old_length_and_revision() -> None:
    row, raw = capture_row("2018-03-07_wikidata_3818_old-shape.jsonl", 78)
    assert json.loads(raw)["length"] == {"new": 159, "old": None}
    assert (row.type, row.bot, row.title, row.user_name) == ("new", True, "Q50361689", "SuccuBot")
    assert (row.length_old, row.length_new, row.revision_old, row.revision_new) == (
        None,
        159,
        None,
        645091390,
    )
    assert (row.rcid, row.patrolled, row.event_time) == (680514445, True, at(16, 16, 23, day=(2018, 3, 7)))


def test_a_2018_log_event_with_null_rcid_and_log_params_an_object() -> None:
    row, raw = capture_row("2018-03-07_wikidata_3818_old-shape.jsonl", 225)
    assert json.loads(raw)["log_params"] == {"auto": 0, "previd": "644927705", "curid": "644927776"}
    assert row._replace(raw="") == ChangeRow(
        event_time=at(16, 16, 36, day=(2018, 3, 7)),
        event_id=uuid.UUID("e8c9812b-2222-11e8-91d2-141877614a81"),
        wiki="wikidatawiki",
        server_name="www.wikidata.org",
        lang=None,
        project="wikidata",
        type="log",
        namespace=0,
        title="Q50356106",
        user_name="YMS",
        bot=False,
        minor=None,
        patrolled=None,
        length_old=None,
        length_new=None,
        revision_old=None,
        revision_new=None,
        rcid=None,
        log_type="patrol",
        log_action="patrol",
        comment="",
        raw="",
    )


def test_a_2023_english_wikipedia_edit() -> None:
    row, _ = capture_row("2023-07-29_enwiki_100.jsonl", 0)
    assert row[:19] == (
        at(7, 51, 39, day=(2023, 7, 29)),
        uuid.UUID("0416300b-980c-45bb-b0a2-c9d7a9e2b7eb"),
        "enwiki",
        "en.wikipedia.org",
        "en",
        "wikipedia",
        "edit",
        0,
        "EFL Championship",
        "87.12.215.232",
        False,
        False,
        None,
        91108,
        91166,
        1166824248,
        1167689309,
        1659529639,
        None,
    )
    assert row.comment == "/* League champions, runners-up and play-off finalists */"


def test_the_2025_shape_on_commons() -> None:
    row, raw = capture_row("2025-05-03_sample_144.jsonl", 0)
    assert {"title_url", "notify_url"} <= json.loads(raw).keys()
    assert row == ChangeRow(
        event_time=at(7, 46, 19, day=(2025, 5, 3)),
        event_id=uuid.UUID("b18f469c-1522-4e04-b167-0b34aa79ea3e"),
        wiki="commonswiki",
        server_name="commons.wikimedia.org",
        lang=None,
        project="commons",
        type="edit",
        namespace=6,
        title="File:City Lake, Floresti, Moldova - 49359471043.jpg",
        user_name="CuratorBot",
        bot=True,
        minor=False,
        patrolled=True,
        length_old=3057,
        length_new=6435,
        revision_old=1016570351,
        revision_new=1027292291,
        rcid=2842663881,
        log_type=None,
        log_action=None,
        comment=(
            "/* wbeditentity-update:0| */ add [[Commons:Structured data|SDC]] based on metadata from Flickr."
            " Task #2"
        ),
        raw=raw,
    )


def test_a_2025_thanks_log_event() -> None:
    row, raw = capture_row("2025-05-03_sample_144.jsonl", 143)
    assert json.loads(raw)["log_params"] == []
    assert (row.wiki, row.lang, row.type, row.namespace, row.title) == (
        "dewiki",
        "de",
        "log",
        2,
        "Benutzer:LionGoneWild",
    )
    assert (row.user_name, row.bot, row.rcid, row.log_type, row.log_action) == (
        "Brunswyk",
        False,
        None,
        "thanks",
        "thank",
    )
    assert row.event_time == at(7, 47, 48, day=(2025, 5, 3))


# -- the malformed corpus ----------------------------------------------------------------------------

ROW = "row"

# The outcome of each line of tests/data/malformed/events.jsonl, in order: ROW, CANARY or the reason.
EXPECTED_OUTCOMES: list[object] = [
    ROW,  # 1
    "invalid JSON: Input data was truncated",
    "invalid JSON: JSON is malformed: trailing characters (byte 778)",
    "not a JSON object: got array",
    "not a JSON object: got integer",
    "not a JSON object: got string",
    "not a JSON object: got null",
    "not a JSON object: got boolean",
    "missing meta",
    "missing meta",  # 10
    "missing meta.id",
    "field 'meta.id': invalid UUID",
    "field 'meta.id': expected UUID string, got int",
    "field 'meta': expected object, got str",
    "missing timestamp",  # 15
    "field 'timestamp': expected int, got str",
    "field 'timestamp': expected int, got float",
    "field 'timestamp': 1690617099000 is outside 2001-01-01..2100-01-01",
    "field 'namespace': expected int, got str",
    "field 'namespace': expected int <= 2147483647",  # 20
    "field 'bot': expected bool, got str",
    "missing bot",
    "missing bot",
    "missing type",
    "field 'length': expected object, got int",  # 25
    "field 'length.new': expected int, got str",
    "field 'user': expected str, got int",
    "missing wiki",
    ROW,
    "missing wiki (server_name 'wiki.example.org' is not a known wiki)",  # 30
    ROW,
    ROW,
    ROW,
    ROW,
    CANARY,  # 35
    CANARY,
    ROW,
    ROW,
    ROW,
    ROW,  # 40
    ROW,
    "invalid UTF-8: invalid continuation byte at byte 422",
    "invalid JSON: JSON is malformed: unexpected end of escaped utf-16 surrogate pair (byte 425)",
    ROW,
    "invalid JSON: number 1e-20000 is beyond the range of PostgreSQL numeric",  # 45
    "invalid JSON: nested too deeply",
    ROW,
    ROW,
    ROW,
    "field 'length.old': expected int <= 2147483647",  # 50
]


def malformed_lines() -> list[bytes]:
    return (MALFORMED_DIR / "events.jsonl").read_bytes().split(b"\n")[:-1]


def outcome(result: ChangeRow | Rejection | Canary) -> object:
    if isinstance(result, ChangeRow):
        return ROW
    if isinstance(result, Rejection):
        return result.reason
    return result


def test_the_malformed_corpus_line_by_line() -> None:
    lines = malformed_lines()
    assert len(lines) == len(EXPECTED_OUTCOMES)
    for number, (line, expected) in enumerate(zip(lines, EXPECTED_OUTCOMES, strict=True), start=1):
        result = parse(line)
        assert outcome(result) == expected, f"line {number}"
        if isinstance(result, ChangeRow):
            assert_storable(result)
        if isinstance(result, Rejection):
            assert result.payload == line.decode("utf-8", "backslashreplace"), f"line {number}"


def malformed_row(number: int) -> tuple[ChangeRow, bytes]:
    line = malformed_lines()[number - 1]
    return parse_row(line), line


def test_a_wiki_named_only_by_meta_domain() -> None:
    row, _ = malformed_row(29)
    assert (row.wiki, row.server_name, row.lang, row.project) == (
        "dewiki",
        "de.wikipedia.org",
        "de",
        "wikipedia",
    )


def test_nul_is_stored_as_the_replacement_character() -> None:
    row, line = malformed_row(31)
    assert b"EFL\\u0000Championship" in line
    assert row.title == "EFL\ufffdChampionship"
    assert row.comment == "a\ufffdb\ufffd"
    assert "\\u0000" not in row.raw
    stored = json.loads(row.raw)
    assert (stored["title"], stored["comment"]) == (row.title, row.comment)
    # Only the NULs change: the rest of the event is as received.
    original = json.loads(line)
    assert {k: v for k, v in stored.items() if k not in ("title", "comment")} == {
        k: v for k, v in original.items() if k not in ("title", "comment")
    }


def test_an_escaped_backslash_before_u0000_is_not_a_nul() -> None:
    row, line = malformed_row(32)
    assert row.comment == "C:\\u0000 is not a NUL"
    assert row.raw == line.decode()


def test_nul_in_keys_and_unlooked_at_fields() -> None:
    row, _ = malformed_row(47)
    stored = json.loads(row.raw)
    assert stored["extra"] == {"k\ufffdey": ["v\ufffd"]}
    assert stored["log_params"] == {"a": "\ufffd"}


def test_a_200_kb_comment_is_kept_whole() -> None:
    row, line = malformed_row(33)
    assert row.comment == "x" * 200_000
    assert row.raw == line.decode()


def test_an_unknown_type_is_kept() -> None:
    row, _ = malformed_row(34)
    assert row.type == "external"


def test_duplicates_both_parse() -> None:
    first, _ = malformed_row(37)
    second, _ = malformed_row(38)
    assert first == second  # telling them apart is the writer's business


def test_log_params_as_a_string() -> None:
    row, _ = malformed_row(39)
    assert (row.type, row.log_type, row.log_action, row.length_new) == ("log", "newusers", "create", None)
    assert json.loads(row.raw)["log_params"] == 'a:1:{s:6:"userid";i:42;}'


def test_optional_fields_null_or_absent() -> None:
    row, _ = malformed_row(40)
    assert (row.rcid, row.namespace, row.log_type, row.log_action) == (None, -1, "thanks", "thank")
    row, _ = malformed_row(41)
    assert (row.type, row.length_old, row.length_new, row.revision_old, row.revision_new) == (
        "new",
        None,
        10,
        None,
        5,
    )
    row, _ = malformed_row(48)
    assert (row.namespace, row.title, row.user_name, row.comment, row.minor) == (None, None, None, None, None)
    assert (row.length_old, row.length_new, row.revision_old, row.revision_new, row.rcid) == (None,) * 5


def test_a_surrogate_pair_escape_is_one_character() -> None:
    row, _ = malformed_row(44)
    assert row.title == "😀"


def test_an_invalid_utf8_payload_is_quarantined_with_its_bytes_visible() -> None:
    result = parse(malformed_lines()[41])
    assert isinstance(result, Rejection)
    assert '"title":"Caf\\xe9"' in result.payload


def test_a_huge_payload_is_quarantined_truncated_with_a_note() -> None:
    result = parse("[" + "1," * 750_000)
    assert isinstance(result, Rejection)
    assert result.reason == "invalid JSON: Input data was truncated"
    assert result.payload == "[" + ("1," * 750_000)[: MAX_REJECTED_PAYLOAD - 1] + (
        "\n[truncated: 1,500,001 characters received, the first 1,000,000 kept]"
    )


def test_a_rejected_payload_holds_no_nul() -> None:
    result = parse(b'{"meta": 1}\x00')
    assert result == Rejection(
        "invalid JSON: JSON is malformed: trailing characters (byte 12)", '{"meta": 1}\ufffd'
    )


def test_canary_is_one_sentinel() -> None:
    assert Canary() is CANARY
    assert repr(CANARY) == "CANARY"


# -- the malformed stream ----------------------------------------------------------------------------


def test_the_malformed_stream() -> None:
    decoder = SSEDecoder()
    stream = (MALFORMED_DIR / "events.sse").read_bytes()
    events = decoder.feed(stream) + decoder.finish()
    assert [(e.event, e.id, e.retry) for e in events] == [
        ("message", "[1]", None),
        ("message", "[2]", None),
        ("error", "[3]", None),
        ("message", "[4]", None),
        ("message", "[4]", None),  # its `id:` held a NULL and was ignored
        ("message", "[6]", 2000),
        ("message", "[7]", None),
        ("message", "", None),  # a bare `id` field resets the last event ID
    ]
    assert (decoder.last_event_id, decoder.retry_ms) == ("", 2000)
    # One byte at a time gives the same events.
    one_by_one = SSEDecoder()
    assert [e for i in range(len(stream)) for e in one_by_one.feed(stream[i : i + 1])] == events

    results = [parse(e.data) for e in events if e.event == "message"]
    assert [outcome(r) for r in results] == [
        ROW,
        ROW,  # data over several lines, joined with LF: still JSON
        "invalid JSON: JSON is malformed: invalid character (byte 419)",  # LF inside a string
        ROW,
        CANARY,
        "field 'namespace': expected int, got str",
        ROW,
    ]
    rows = [r for r in results if isinstance(r, ChangeRow)]
    assert [r.type for r in rows] == ["edit", "edit", "edit", "categorize"]
    assert rows[2].title == "A\ufffdB"
    assert events[1].data.count("\n") > 10


# -- fuzzing -----------------------------------------------------------------------------------------


def check_total(result: object) -> None:
    """A parse outcome that a crash could not have produced: `parse_event` turns any exception into an
    "internal error" rejection, so "never raises" alone would let a crash pass."""
    assert isinstance(result, ChangeRow | Rejection | Canary)
    if isinstance(result, ChangeRow):
        assert_storable(result)
    elif isinstance(result, Rejection):
        assert not result.reason.startswith("internal error"), result.reason
        assert "\0" not in result.payload
        result.payload.encode("utf-8")
        assert len(result.payload) <= MAX_REJECTED_PAYLOAD + 100


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300))
def test_never_raises_on_any_bytes_or_text(payload: bytes | str) -> None:
    check_total(parse(payload))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None)
@given(json_values)
def test_never_raises_on_any_json(value: Any) -> None:
    check_total(parse(json.dumps(value)))
    check_total(parse(json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")))


TYPED_FIELDS = [
    ("meta",),
    ("meta", "id"),
    ("meta", "domain"),
    ("id",),
    ("type",),
    ("namespace",),
    ("title",),
    ("comment",),
    ("timestamp",),
    ("user",),
    ("bot",),
    ("minor",),
    ("patrolled",),
    ("length",),
    ("length", "old"),
    ("revision",),
    ("revision", "new"),
    ("server_name",),
    ("wiki",),
    ("log_type",),
    ("log_action",),
    ("log_params",),
]
SAMPLE_EVENTS = [json.loads(line) for line in capture_lines("2021-08-27_all-wikis_1950.jsonl")[:200]]


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(SAMPLE_EVENTS), st.sampled_from(TYPED_FIELDS), json_values | st.just("\0"))
def test_never_raises_on_a_real_event_with_one_field_changed(
    event: dict[str, Any], path: tuple[str, ...], value: Any
) -> None:
    event = json.loads(json.dumps(event))
    target = event
    for key in path[:-1]:
        target = target.setdefault(key, {}) if isinstance(target.get(key), dict) else {}
    target[path[-1]] = value
    result = parse(json.dumps(event))
    check_total(result)
    if isinstance(result, ChangeRow):
        assert json.loads(result.raw).keys() == event.keys()


def test_text_with_a_lone_surrogate_is_quarantined() -> None:
    # A `str` that did not come from a UTF-8 decode can hold one; PostgreSQL could not store it.
    result = parse('{"title": "\ud800"}')
    assert result == Rejection("invalid text: surrogates not allowed at character 11", '{"title": "\\ud800"}')


class FailingCatalog(WikiCatalog):
    def for_event(self, server_name: str | None, dbname: str | None) -> Any:
        raise RuntimeError("catalog unavailable")


def test_an_unexpected_error_becomes_a_rejection() -> None:
    line = capture_lines("2023-07-29_enwiki_100.jsonl")[0]
    result = parse_event(line, FailingCatalog([]))
    assert result == Rejection("internal error: RuntimeError: catalog unavailable", line.decode())
    # ... which the fuzz tests' check refuses: a crash inside the parser fails them.
    with pytest.raises(AssertionError, match="internal error"):
        check_total(result)
