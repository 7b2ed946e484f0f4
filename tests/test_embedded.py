"""The embedded server is a real PostgreSQL: initialised once, reused across runs, stopped cleanly."""

import os
import subprocess
import sys
from pathlib import Path

import psycopg

from teston import database
from teston.embedded import EmbeddedPostgres


def test_data_survives_a_restart_and_the_port_is_reused(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "pg", settings={"fsync": "off"})
    url = server.start()
    assert server.started_here
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (n int)")
        conn.execute("INSERT INTO kept VALUES (42)")
    server.stop()
    assert not server.is_running()

    again = EmbeddedPostgres(tmp_path / "pg", settings={"fsync": "off"})
    with again:
        assert again.url == url
        with psycopg.connect(again.url) as conn:
            assert conn.execute("SELECT n FROM kept").fetchone() == (42,)
            version = conn.execute("SHOW server_version_num").fetchone()
    assert version is not None and int(version[0]) >= 160000
    assert not again.is_running()


def test_a_second_handle_reuses_a_running_server_and_leaves_it_running(tmp_path: Path) -> None:
    first = EmbeddedPostgres(tmp_path / "pg", settings={"fsync": "off"})
    with first:
        second = EmbeddedPostgres(tmp_path / "pg")
        with second:
            assert not second.started_here
            assert second.url == first.url
        assert first.is_running()  # the second handle did not stop what it did not start
    assert not first.is_running()


def test_the_last_process_out_stops_the_server_not_the_one_that_started_it(tmp_path: Path) -> None:
    starter = EmbeddedPostgres(tmp_path / "pg", settings={"fsync": "off"})
    starter.start()
    user = EmbeddedPostgres(tmp_path / "pg")
    user.start()
    assert starter.started_here and not user.started_here
    starter.release()  # e.g. `teston rollup` ends while `teston up` still ingests
    assert user.is_running()
    with psycopg.connect(user.url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    user.release()
    assert not user.is_running()


def test_a_kept_server_outlives_its_users_until_stopped(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "pg", settings={"fsync": "off"})
    server.start()
    server.keep_running()  # what `teston db url` asks for
    with EmbeddedPostgres(tmp_path / "pg"):
        pass
    server.release()
    assert server.is_running()
    server.stop()
    assert not server.is_running()


def test_cli_db_url_serves_psql_and_db_stop_stops_it(tmp_path: Path) -> None:
    env = {**os.environ, "TESTON_HOME": str(tmp_path / "home")}
    env.pop("DB_ADDR", None)
    env.pop("DATABASE_URL", None)
    teston = [sys.executable, "-m", "teston"]
    upgraded = subprocess.run(
        [*teston, "db", "upgrade"], env=env, capture_output=True, text=True, timeout=120
    )
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"database at revision {database.head_revision()}" in upgraded.stdout

    printed = subprocess.run([*teston, "db", "url"], env=env, capture_output=True, text=True, timeout=60)
    assert printed.returncode == 0, printed.stderr
    url = printed.stdout.strip()
    assert url.startswith("postgresql://postgres@127.0.0.1:")
    try:
        with psycopg.connect(url) as conn:
            tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname='public'")}
        assert {"recent_changes", "rejected_events", "daily_wiki_stats"} <= tables
    finally:
        stopped = subprocess.run([*teston, "db", "stop"], env=env, capture_output=True, text=True, timeout=60)
    assert stopped.stdout.strip() == "embedded PostgreSQL stopped"


def test_a_missing_setting_is_named_on_the_command_line(tmp_path: Path) -> None:
    env = {**os.environ, "TESTON_HOME": str(tmp_path), "DB_MAX_IDLE_TIME": "whenever"}
    result = subprocess.run(
        [sys.executable, "-m", "teston", "db", "url"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "DB_MAX_IDLE_TIME" in result.stderr
    assert "Traceback" not in result.stderr


def test_version_is_printed() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "teston", "--version"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    assert result.stdout.startswith("teston ")
