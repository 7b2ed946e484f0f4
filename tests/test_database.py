import os
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlmodel import SQLModel

from teston.core import database, partitions
from teston.core.schema import metadata


def test_upgrade_creates_every_table(conn: psycopg.Connection) -> None:
    tables = {
        row[0]
        for row in conn.execute(
            "SELECT tablename FROM pg_tables"
            " WHERE schemaname = 'public' AND tablename NOT LIKE 'recent\\_changes\\_p%'"
        )
    }
    assert tables == {t.name for t in metadata.sorted_tables} | {"alembic_version"}
    kind = conn.execute("SELECT relkind FROM pg_class WHERE relname = 'recent_changes'").fetchone()
    assert kind == ("p",)  # partitioned


def test_upgrade_downgrade_upgrade_round_trip(pg_server, db_url: str) -> None:
    assert database.current_revision(db_url) == database.head_revision()
    database.downgrade(db_url, "base")
    with psycopg.connect(db_url) as conn:
        left = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
    assert left == (1,)  # only alembic_version remains
    database.upgrade(db_url)
    assert database.current_revision(db_url) == database.head_revision()


def test_partitions_are_created_on_demand_for_any_day(conn: psycopg.Connection) -> None:
    days = {date(2018, 3, 7), date(2021, 8, 27)}
    assert partitions.ensure_partitions(conn, days) == days
    assert partitions.ensure_partitions(conn, days) == set()
    assert partitions.existing_partition_days(conn) == days
    conn.execute(
        "INSERT INTO recent_changes (event_time, event_id, wiki, server_name, project, type, bot, raw)"
        " VALUES (%s, gen_random_uuid(), 'enwiki', 'en.wikipedia.org', 'wikipedia', 'edit', false, '{}')",
        (datetime(2021, 8, 27, 23, 59, 59, tzinfo=UTC),),
    )
    where = conn.execute("SELECT tableoid::regclass::text FROM recent_changes").fetchone()
    assert where == ("recent_changes_p20210827",)
    with pytest.raises(psycopg.errors.CheckViolation):  # no partition for 2021-08-28
        conn.execute(
            "INSERT INTO recent_changes (event_time, event_id, wiki, server_name, project, type, bot, raw)"
            " VALUES (%s, gen_random_uuid(), 'enwiki', 'en.wikipedia.org', 'wikipedia', 'edit', false, '{}')",
            (datetime(2021, 8, 28, 0, 0, 0, tzinfo=UTC),),
        )


def test_a_repeated_event_is_a_no_op(conn: psycopg.Connection) -> None:
    partitions.ensure_partitions(conn, {date(2021, 8, 27)})
    insert = (
        "INSERT INTO recent_changes (event_time, event_id, wiki, server_name, project, type, bot, raw)"
        " VALUES ('2021-08-27T13:20:17Z', '59d43ae0-e4e9-4197-990d-52723364e505', 'kowiki',"
        " 'ko.wikipedia.org', 'wikipedia', 'edit', false, '{}') ON CONFLICT DO NOTHING"
    )
    assert conn.execute(insert).rowcount == 1
    assert conn.execute(insert).rowcount == 0


def test_latest_changes_of_one_wiki_use_the_index(conn: psycopg.Connection) -> None:
    partitions.ensure_partitions(conn, {date(2021, 8, 27)})
    conn.execute("SET enable_seqscan = off")
    plan = "\n".join(
        r[0]
        for r in conn.execute(
            "EXPLAIN SELECT * FROM recent_changes WHERE wiki = 'enwiki' ORDER BY event_time DESC LIMIT 10"
        ).fetchall()
    )
    assert "Index Scan using recent_changes_p20210827_wiki_event_time_idx" in plan


def test_the_schema_keeps_sqlmodels_own_metadata() -> None:
    assert metadata is not SQLModel.metadata
    assert "recent_changes" in metadata.tables
    assert "recent_changes" not in SQLModel.metadata.tables
    assert metadata.tables["recent_changes"].primary_key.name == "pk_recent_changes"


def test_standalone_alembic_reads_the_settings(db_url: str, tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if k not in {"DB_ADDR", "DATABASE_URL"}}
    # Only in a .env file in the working directory, as the settings loader reads it.
    (tmp_path / ".env").write_text(f"DB_ADDR={db_url}\n")
    command = [sys.executable, "-m", "alembic", "-c", str(root / "alembic.ini"), "current"]
    env["PYTHONPATH"] = str(root)
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"{database.head_revision()} (head)" in result.stdout

    (tmp_path / ".env").write_text("DB_MAX_OPEN_CONNS=none\n")
    refused = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1
    assert "DB_MAX_OPEN_CONNS" in refused.stderr


def _plan_blocks(plan: dict[str, Any]) -> int:
    """Shared buffers an EXPLAIN (ANALYZE, BUFFERS) node and its children touched."""
    return int(plan["Shared Hit Blocks"]) + int(plan["Shared Read Blocks"])


def test_recent_of_a_wiki_of_bots_reads_only_peoples_edits(conn: psycopg.Connection) -> None:
    from bot.queries import latest_changes_query

    partitions.ensure_partitions(conn, {date(2021, 8, 27)})
    # 3,000 bot changes of cewiki, with page-sized raw JSON so that they fill a few hundred pages,
    # then one person's edit long before them and one category change after.
    conn.execute(
        "INSERT INTO recent_changes (event_time, event_id, wiki, server_name, project, type, bot, raw)"
        " SELECT '2021-08-27T12:00:00Z'::timestamptz + n * interval '1 second', gen_random_uuid(),"
        " 'cewiki', 'ce.wikipedia.org', 'wikipedia', 'edit', true,"
        " jsonb_build_object('comment', repeat('x', 500)) FROM generate_series(1, 3000) AS n"
    )
    conn.execute(
        "INSERT INTO recent_changes (event_time, event_id, wiki, server_name, project, type, bot, raw)"
        " VALUES ('2021-08-27T01:00:00Z', gen_random_uuid(), 'cewiki', 'ce.wikipedia.org', 'wikipedia',"
        " 'edit', false, '{}'), ('2021-08-27T23:00:00Z', gen_random_uuid(), 'cewiki', 'ce.wikipedia.org',"
        " 'wikipedia', 'categorize', false, '{}')"
    )
    conn.execute("ANALYZE recent_changes_p20210827")
    conn.execute("SET enable_seqscan = off")
    query = latest_changes_query(include_bots=False, include_categorize=False).as_string(conn)
    ((explained,),) = conn.execute(
        "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + query, {"wiki": "cewiki", "limit": 10}
    ).fetchall()
    plan = explained[0]["Plan"]
    assert plan["Actual Rows"] == 1  # the one person's edit
    # Its index holds only what the default view shows: a handful of pages, not the bots' 3,000 rows.
    assert _plan_blocks(plan) < 10
    rows = conn.execute(query, {"wiki": "cewiki", "limit": 10}).fetchall()
    assert [row[0] for row in rows] == [datetime(2021, 8, 27, 1, 0, tzinfo=UTC)]
