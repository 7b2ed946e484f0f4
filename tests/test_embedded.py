"""The embedded server is a real PostgreSQL: initialised once, reused across runs, stopped cleanly."""

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from teston.core import database
from teston.core.embedded import EmbeddedPostgres
from teston.core.server_account import bin_dir


def _assert_refused_without_password(url: str) -> None:
    params = conninfo_to_dict(url)
    params.pop("password")
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(make_conninfo(**{k: str(v) for k, v in params.items()}), passfile=os.devnull)


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
    assert version is not None
    assert int(version[0]) >= 160000
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
    assert starter.started_here
    assert not user.started_here
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
    password = (tmp_path / "home" / "postgres" / "password").read_text().strip()
    assert url.startswith(f"postgresql://postgres:{password}@127.0.0.1:")
    try:
        with psycopg.connect(url) as conn:
            tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname='public'")}
        assert {"recent_changes", "rejected_events", "daily_wiki_stats"} <= tables
        psql = subprocess.run(
            [str(bin_dir() / "psql"), url, "-Atc", "SELECT count(*) FROM recent_changes"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**env, "PGPASSFILE": os.devnull},
        )
        assert (psql.returncode, psql.stdout) == (0, "0\n"), psql.stderr
        _assert_refused_without_password(url)
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


def test_the_server_needs_a_password_kept_for_its_owner_only(tmp_path: Path) -> None:
    with EmbeddedPostgres(tmp_path / "pg", settings={"fsync": "off"}) as server:
        password_file = tmp_path / "pg" / "password"
        assert password_file.stat().st_mode & 0o777 == 0o600
        with psycopg.connect(server.url) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("postgres",)
        _assert_refused_without_password(server.url)


def test_a_home_made_with_trust_gets_a_password_and_keeps_its_data(tmp_path: Path) -> None:
    # What an older TestON left: pg_hba trusting 127.0.0.1, no password set, no password file.
    old = EmbeddedPostgres(tmp_path / "pg", settings={"fsync": "off"})
    with psycopg.connect(old.start(), autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (n int)")
        conn.execute("INSERT INTO kept VALUES (7)")
        conn.execute("ALTER ROLE postgres PASSWORD NULL")
    (old.pgdata / "pg_hba.conf").write_text("host all all 127.0.0.1/32 trust\n")
    old.password_file.unlink()
    old.stop()

    with EmbeddedPostgres(tmp_path / "pg") as upgraded:
        assert upgraded.password_file.stat().st_mode & 0o777 == 0o600
        with psycopg.connect(upgraded.url) as conn:
            assert conn.execute("SELECT n FROM kept").fetchone() == (7,)
        _assert_refused_without_password(upgraded.url)
    assert "trust" not in (old.pgdata / "pg_hba.conf").read_text()


def test_creating_the_system_user_is_said_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root runs PostgreSQL as a system user of TestON's")
    user = f"teston-t{os.getpid()}"
    try:
        for _ in range(2):
            (tmp_path / "pg").mkdir(exist_ok=True)
            EmbeddedPostgres(tmp_path / "pg", system_user=user)._prepare_user()
        said = [r.getMessage() for r in caplog.records if "created the system user" in r.getMessage()]
        assert said == [
            f"created the system user {user} to run the embedded PostgreSQL (it refuses to run as root)"
        ]
    finally:
        subprocess.run(["userdel", user], capture_output=True, check=False)
