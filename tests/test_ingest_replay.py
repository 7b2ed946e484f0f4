"""File replays end to end: `teston ingest --source FILE` and `ingest_path` on real PostgreSQL."""

from __future__ import annotations

import gzip
import json
import shutil
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from typer.testing import CliRunner

from ingestion.events import INGEST_COLUMNS, ChangeRow, Rejection, parse_event
from ingestion.sources import file_fingerprint
from ingestion.sse import SSEDecoder
from teston.cli import app
from teston.core.wikis import WikiCatalog
from tests.conftest import DATA_DIR
from tests.replays import ingest_path

CAPTURE_SSE = DATA_DIR / "2021-08-27_all-wikis_1950.sse"
CAPTURE_JSONL = DATA_DIR / "2021-08-27_all-wikis_1950.jsonl"
MALFORMED = DATA_DIR / "malformed"


@pytest.fixture(scope="module")
def catalog() -> WikiCatalog:
    return WikiCatalog.load()


@pytest.fixture
def cli_env(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setenv("DB_ADDR", db_url)
    monkeypatch.setenv("METRICS_PORT", "0")
    return CliRunner()


def capture_ids() -> list[str]:
    return [json.loads(line)["meta"]["id"] for line in CAPTURE_JSONL.read_text().splitlines()]


def table(url: str, query: str | sql.Composed) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchall()


def test_the_cli_stores_exactly_the_distinct_events_of_the_capture(cli_env: CliRunner, db_url: str) -> None:
    result = cli_env.invoke(app, ["ingest", "--source", str(CAPTURE_SSE), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ingested 1950, duplicates 0, canary 0, rejected 0 in ")
    stored = [str(r[0]) for r in table(db_url, "SELECT event_id FROM recent_changes")]
    assert sorted(stored) == sorted(capture_ids())
    assert table(db_url, "SELECT day FROM day_arrivals")[0][0].isoformat() == "2021-08-27"
    cursors = table(db_url, "SELECT stream, last_event_id FROM stream_cursors")
    assert cursors == [(f"file:{CAPTURE_SSE.resolve()}", f"1950 {file_fingerprint(CAPTURE_SSE)}")]

    # Again: the cursor says the file is done, and the summary says so.
    again = cli_env.invoke(app, ["ingest", "--source", str(CAPTURE_SSE), "--no-progress"])
    assert again.exit_code == 0
    assert again.stdout.startswith(
        "the file was already ingested to its end, nothing new stored: "
        "ingested 0, duplicates 0, canary 0, rejected 0 in "
    )
    # The same events from another file: every one a duplicate, nothing changes.
    other = cli_env.invoke(app, ["ingest", "--source", str(CAPTURE_JSONL), "--no-progress"])
    assert other.exit_code == 0
    assert other.stdout.startswith("ingested 0, duplicates 1950, canary 0, rejected 0")
    assert table(db_url, "SELECT count(*) FROM recent_changes") == [(1950,)]


def test_a_missing_file_is_a_usage_error(cli_env: CliRunner) -> None:
    result = cli_env.invoke(app, ["ingest", "--source", "no/such/file.jsonl", "--no-progress"])
    assert result.exit_code == 2
    assert "no such file" in result.output


@pytest.mark.parametrize("original", [CAPTURE_JSONL, CAPTURE_SSE], ids=["jsonl.gz", "sse.gz"])
def test_compressed_files_replay_like_plain_ones(
    original: Path, tmp_path: Path, db_url: str, catalog: WikiCatalog
) -> None:
    compressed = tmp_path / (original.name + ".gz")
    with original.open("rb") as plain, gzip.open(compressed, "wb") as packed:
        shutil.copyfileobj(plain, packed)
    summary = ingest_path(db_url, compressed, catalog=catalog, batch_size=300)
    assert (summary.ingested, summary.duplicates, summary.quarantined) == (1950, 0, 0)
    assert summary.batches == 7
    stored = [str(r[0]) for r in table(db_url, "SELECT event_id FROM recent_changes")]
    assert sorted(stored) == sorted(capture_ids())


def test_a_killed_replay_resumes_after_its_cursor(tmp_path: Path, db_url: str, catalog: WikiCatalog) -> None:
    path = tmp_path / "capture.jsonl"
    shutil.copy(CAPTURE_JSONL, path)
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO stream_cursors (stream, last_event_id) VALUES (%s, %s)",
            (f"file:{path.resolve()}", f"1200 {file_fingerprint(path)}"),
        )
    summary = ingest_path(db_url, path, catalog=catalog)
    assert summary.ingested == 750
    assert not summary.already_at_end
    stored = {str(r[0]) for r in table(db_url, "SELECT event_id FROM recent_changes")}
    assert stored == set(capture_ids()[1200:])


def test_a_different_file_at_the_same_path_starts_over(
    tmp_path: Path, db_url: str, catalog: WikiCatalog
) -> None:
    path = tmp_path / "capture.jsonl"
    lines = CAPTURE_JSONL.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:100]))
    assert ingest_path(db_url, path, catalog=catalog).ingested == 100
    path.write_bytes(b"".join(lines[100:300]))
    assert ingest_path(db_url, path, catalog=catalog).ingested == 200
    assert table(db_url, "SELECT count(*) FROM recent_changes") == [(300,)]


# -- the malformed corpus: exactly the rows and quarantine records the parser decides ----------------


def _jsonl_outcomes(path: Path, catalog: WikiCatalog) -> list[tuple[str, ChangeRow | Rejection | object]]:
    lines = path.read_bytes().split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [
        (f"{path.resolve()}:{number}", parse_event(line.rstrip(b"\r"), catalog))
        for number, line in enumerate(lines, start=1)
        if line.strip()
    ]


def _sse_outcomes(path: Path, catalog: WikiCatalog) -> list[tuple[str, ChangeRow | Rejection | object]]:
    decoder = SSEDecoder()
    events = decoder.feed(path.read_bytes()) + decoder.feed(b"\n\n")
    # Only `message` events are recent changes; EventStreams' `event: error` notices are logged, not stored.
    messages = [e.data for e in events if e.event == "message" and e.data]
    return [
        (f"{path.resolve()}#{number}", parse_event(data, catalog))
        for number, data in enumerate(messages, start=1)
    ]


Expected = tuple[dict[tuple[Any, Any], ChangeRow], set[tuple[str, ...]]]


def _expected(outcomes: list[tuple[str, Any]]) -> Expected:
    rows: dict[tuple[Any, Any], ChangeRow] = {}
    quarantine: set[tuple[str, ...]] = set()
    for origin, outcome in outcomes:
        if isinstance(outcome, ChangeRow):
            rows.setdefault((outcome.event_time, outcome.event_id), outcome)  # the first copy wins
        elif isinstance(outcome, Rejection):
            quarantine.add((origin, outcome.reason, outcome.payload))
    return rows, quarantine


@pytest.mark.parametrize("name", ["events.jsonl", "events.sse"])
def test_the_malformed_corpus_yields_exactly_the_parsed_rows_and_quarantine(
    name: str, cli_env: CliRunner, db_url: str, catalog: WikiCatalog
) -> None:
    path = MALFORMED / name
    outcomes = _jsonl_outcomes(path, catalog) if name.endswith(".jsonl") else _sse_outcomes(path, catalog)
    expected_rows, expected_quarantine = _expected(outcomes)
    assert expected_rows
    assert expected_quarantine

    for _ in range(2):  # the second run must change nothing
        result = cli_env.invoke(app, ["ingest", "--source", str(path), "--no-progress"])
        assert result.exit_code == 0, result.output
        columns = sql.SQL(", ").join(map(sql.Identifier, INGEST_COLUMNS))
        stored = table(db_url, sql.SQL("SELECT {} FROM recent_changes").format(columns))
        assert len(stored) == len(expected_rows)
        for row in stored:
            want = expected_rows[(row[0], row[1])]
            raw_at = INGEST_COLUMNS.index("raw")
            assert row[:raw_at] + row[raw_at + 1 :] == want[:raw_at] + want[raw_at + 1 :]
            assert row[raw_at] == json.loads(want.raw)
        quarantine = table(db_url, "SELECT source, reason, payload FROM rejected_events")
        assert len(quarantine) == len(expected_quarantine)
        assert set(quarantine) == expected_quarantine

    canaries = sum(1 for _, outcome in outcomes if not isinstance(outcome, ChangeRow | Rejection))
    if name.endswith(".jsonl"):
        assert canaries == 2
    first = cli_env.invoke(app, ["ingest", "--source", str(path), "--no-progress"])
    assert first.stdout.startswith(
        "the file was already ingested to its end, nothing new stored: "
        "ingested 0, duplicates 0, canary 0, rejected 0"
    )


# -- damaged and unusual files ----------------------------------------------------------------------

BOM = b"\xef\xbb\xbf"


def _written(path: Path, data: bytes) -> Path:
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("name", "original"),
    [
        ("bom.jsonl", CAPTURE_JSONL),
        ("bom.jsonl.gz", CAPTURE_JSONL),
        ("bom.sse", CAPTURE_SSE),
        ("bom.sse.gz", CAPTURE_SSE),
    ],
)
def test_a_byte_order_mark_is_not_part_of_the_first_event(
    name: str, original: Path, tmp_path: Path, db_url: str, catalog: WikiCatalog
) -> None:
    path = _written(tmp_path / name, BOM + original.read_bytes())
    summary = ingest_path(db_url, path, catalog=catalog)
    assert (summary.ingested, summary.quarantined) == (1950, 0)
    assert table(db_url, "SELECT count(*) FROM rejected_events") == [(0,)]


def _cut_gzip(original: Path, path: Path, fraction: float) -> bytes:
    """Write `original` gzip-compressed and cut short to `path`; return what of it can be decompressed."""
    packed = gzip.compress(original.read_bytes())
    cut = packed[: int(len(packed) * fraction)]
    path.write_bytes(cut)
    return zlib.decompressobj(wbits=31).decompress(cut)


def test_a_cut_short_jsonl_gz_stores_every_complete_event_then_says_so(
    cli_env: CliRunner, db_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "capture.jsonl.gz"
    readable = _cut_gzip(CAPTURE_JSONL, path, 0.6)
    complete = readable.split(b"\n")[:-1]  # the last piece is a line cut in two
    assert 500 < len(complete) < 1950
    expected = [json.loads(line)["meta"]["id"] for line in complete]

    for _ in range(2):  # and again: the same answer, nothing more stored
        result = cli_env.invoke(app, ["ingest", "--source", str(path), "--no-progress"])
        assert result.exit_code == 1, result.output
        [line] = result.stderr.strip().splitlines()
        assert line.startswith(f"teston: {path} is damaged and was read only up to the damage (")
        assert "Compressed file ended before the end-of-stream marker was reached" in line
        assert "Traceback" not in result.output
        stored = sorted(str(r[0]) for r in table(db_url, "SELECT event_id FROM recent_changes"))
        assert stored == sorted(expected)
        assert table(db_url, "SELECT count(*) FROM rejected_events") == [(0,)]
    cursor = table(db_url, "SELECT last_event_id FROM stream_cursors")
    assert cursor == [(f"{len(complete)} {file_fingerprint(path)}",)]


def test_a_cut_short_sse_gz_stores_every_complete_event(
    tmp_path: Path, db_url: str, catalog: WikiCatalog
) -> None:
    path = tmp_path / "capture.sse.gz"
    readable = _cut_gzip(CAPTURE_SSE, path, 0.5)
    decoder = SSEDecoder()
    complete = [e.data for e in decoder.feed(readable) if e.event == "message" and e.data]
    summary = ingest_path(db_url, path, catalog=catalog)
    assert summary.damage == "Compressed file ended before the end-of-stream marker was reached"
    assert (summary.ingested, summary.quarantined) == (len(complete), 0)
    stored = sorted(str(r[0]) for r in table(db_url, "SELECT event_id FROM recent_changes"))
    assert stored == sorted(json.loads(data)["meta"]["id"] for data in complete)


def test_a_tiny_cut_short_gzip_is_reported_not_a_traceback(cli_env: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "tiny.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"a": 1}\n' * 3)[:12])  # shorter than its own header
    result = cli_env.invoke(app, ["ingest", "--source", str(path), "--no-progress"])
    assert result.exit_code == 1, result.output
    assert f"teston: {path} is damaged" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("name", "content", "read_as", "refused"),
    [
        ("empty.jsonl", b"", "JSON Lines", 0),
        ("blank.jsonl", b"\n\n  \n", "JSON Lines", 0),
        ("empty.jsonl.gz", b"", "JSON Lines", 0),
        ("photo.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x02\x00\n\x00\x01\xff\xd9", "JSON Lines", 2),
        ("events.sse", CAPTURE_JSONL.read_bytes()[:5000], "an SSE capture", 0),
    ],
    ids=["empty", "blank-lines", "empty-gz", "binary", "jsonl-named-sse"],
)
def test_a_file_with_no_events_is_an_error_that_names_the_formats(
    name: str, content: bytes, read_as: str, refused: int, cli_env: CliRunner, tmp_path: Path
) -> None:
    path = _written(tmp_path / name, content)
    result = cli_env.invoke(app, ["ingest", "--source", str(path), "--no-progress"])
    assert result.exit_code == 1, result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"teston: no events found in {path} (read as {read_as}")
    assert line.endswith(
        "replays accept JSON Lines (one event per line, any name but .sse) or a raw SSE capture (.sse), "
        "either optionally gzip-compressed (.gz)"
    )
    assert (f"its {refused} records are not events" in line) == (refused > 0)
