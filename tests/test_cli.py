"""The command line at its edges: configuration and database problems are one clear line, not a traceback."""

import os
import socket
import subprocess
import sys
from pathlib import Path


def _teston(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "teston", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_database_is_one_line_naming_the_variable(tmp_path: Path) -> None:
    url = f"postgresql://nobody@127.0.0.1:{_closed_port()}/nothing"
    result = _teston("db", "upgrade", env={"DB_ADDR": url, "TESTON_HOME": str(tmp_path)})
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith("teston: cannot use PostgreSQL (connection failed")
    assert "DB_ADDR / DATABASE_URL" in line


def test_a_malformed_database_url_is_refused_at_start(tmp_path: Path) -> None:
    result = _teston("db", "url", env={"DB_ADDR": "notaurl", "TESTON_HOME": str(tmp_path)})
    assert result.returncode == 2
    assert result.stderr.startswith("teston: invalid configuration: DB_ADDR: ")
    assert "Traceback" not in result.stderr


def test_a_file_replay_serves_no_metrics_so_it_cannot_collide_with_a_running_service(
    db_url: str, tmp_path: Path
) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        capture = Path(__file__).parent / "data" / "2023-07-29_enwiki_100.jsonl"
        result = _teston(
            "ingest",
            "--source",
            str(capture),
            "--no-progress",
            env={"DB_ADDR": db_url, "METRICS_PORT": str(port), "TESTON_HOME": str(tmp_path)},
        )
    finally:
        busy.close()
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ingested 100, duplicates 0, canary 0, rejected 0")
