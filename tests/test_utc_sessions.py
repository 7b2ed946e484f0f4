"""Times are UTC whatever time zone the server, database or role defaults to.

The database of these tests defaults to America/New_York (UTC−4 in summer, −5 in winter): every
connection TestON opens must still read and write UTC.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict
from typer.testing import CliRunner

from teston.cli import app
from teston.core import database
from tests.bot_fixtures import CATALOG
from tests.replays import ingest_path

CAPTURE = Path(__file__).parent / "data" / "2023-07-29_enwiki_100.jsonl"


@pytest.fixture
def new_york_url(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh database whose sessions default to America/New_York, as `teston` is pointed at it."""
    name = conninfo_to_dict(db_url)["dbname"]
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE {name} SET timezone = 'America/New_York'")
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SHOW TimeZone").fetchone() == ("America/New_York",)
    monkeypatch.setenv("DB_ADDR", db_url)
    monkeypatch.setenv("EXPORT_DIR", str(tmp_path / "exports"))
    return db_url


def run_cli(*arguments: str) -> str:
    result = CliRunner().invoke(app, list(arguments))
    assert result.exit_code == 0, result.output
    return result.stdout


def test_in_utc_keeps_other_options() -> None:
    url = "postgresql://u@h/db?options=-c%20search_path%3Dfoo"
    options = conninfo_to_dict(database.in_utc(url))["options"]
    assert options == "-c search_path=foo -c TimeZone=UTC"
    assert database.in_utc(database.in_utc(url)) == database.in_utc(url)


def test_recent_and_stats_are_utc_on_a_new_york_server(new_york_url: str, tmp_path: Path) -> None:
    rows = [json.loads(line) for line in CAPTURE.read_text(encoding="utf-8").splitlines() if line.strip()]
    newest = max(
        (row for row in rows if not row["bot"] and row["type"] != "categorize"),
        key=lambda row: (row["timestamp"], row.get("id") or 0),
    )
    hours = Counter(datetime.fromtimestamp(row["timestamp"], UTC).hour for row in rows)
    busiest = max(sorted(hours), key=lambda hour: hours[hour])
    # One change of today, so that today has a partial roll-up.
    now = datetime.now(UTC).replace(microsecond=0)
    today_event = dict(
        newest, timestamp=int(now.timestamp()), meta=dict(newest["meta"], id=str(uuid.uuid4()))
    )
    today_event["id"] = (newest.get("id") or 0) + 10**9
    today_file = tmp_path / "today.jsonl"
    today_file.write_text(json.dumps(today_event) + "\n", encoding="utf-8")
    ingest_path(new_york_url, CAPTURE, catalog=CATALOG)
    ingest_path(new_york_url, today_file, catalog=CATALOG)

    run_cli("rollup", "--from", "2023-07-29", "--to", now.date().isoformat())

    out = run_cli("ask", "!recent en 1 all")
    moment = out.splitlines()[1].split(" | ")[0]
    assert moment == f"{now:%Y-%m-%d %H:%M:%S} UTC"
    out = run_cli("ask", "!recent en 2 all")
    moment = out.splitlines()[2].split(" | ")[0]
    assert moment == f"{datetime.fromtimestamp(newest['timestamp'], UTC):%Y-%m-%d %H:%M:%S} UTC"

    out = run_cli("ask", "!stats 2023-07-29 en")
    assert out.splitlines()[0] == f"On 2023-07-29, there were {len(rows)} changes for language 'en'."
    assert f"Busiest hour: {busiest:02d}:00–{busiest + 1:02d}:00 UTC ({hours[busiest]:,})" in out
    with psycopg.connect(database.in_utc(new_york_url)) as conn:
        days = conn.execute("SELECT day, events FROM day_rollups ORDER BY day").fetchall()
        computed_at = conn.execute(
            "SELECT computed_at FROM day_rollups WHERE day = %s", (now.date(),)
        ).fetchone()
    assert days == [(datetime(2023, 7, 29).date(), len(rows)), (now.date(), 1)]
    assert computed_at is not None
    assert abs(computed_at[0] - now) < timedelta(hours=1)

    out = run_cli("ask", "!stats today en")
    assert f"(as of today {computed_at[0].astimezone(UTC):%H:%M} UTC)" in out
