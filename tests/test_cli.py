"""The command line at its edges: configuration and database problems are one clear line, not a traceback."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ingestion.batch import StreamCursor
from ingestion.resilient_writer import ResilientWriter
from ingestion.stream_lock import StreamBusy
from teston.cli import app

CAPTURE = Path(__file__).parent / "data" / "2023-07-29_enwiki_100.jsonl"
BUSY = (
    "file:/data/capture.jsonl is already being written by PostgreSQL backend 4242 (teston-ingest)\n"
    "since 2026-11-27 12:00 UTC; stop that ingester, or wait for it to finish"
)


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
        result = _teston(
            "ingest",
            "--source",
            str(CAPTURE),
            "--no-progress",
            env={"DB_ADDR": db_url, "METRICS_PORT": str(port), "TESTON_HOME": str(tmp_path)},
        )
    finally:
        busy.close()
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ingested 100, duplicates 0, canary 0, rejected 0")


@pytest.fixture
def cli(db_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("DB_ADDR", db_url)
    monkeypatch.setenv("METRICS_PORT", "0")
    return CliRunner()


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "teston: " in line]


def test_a_directory_as_the_source_says_so_and_what_is_accepted(cli: CliRunner, tmp_path: Path) -> None:
    result = cli.invoke(app, ["ingest", "--source", str(tmp_path), "--no-progress"])
    assert result.exit_code == 2
    assert "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if line.strip()] == [
        f"teston: {tmp_path} is a directory: give a stream URL, or a .jsonl[.gz] / .sse[.gz] file to replay"
    ]


def _stream_busy(writer: ResilientWriter, stream: str) -> StreamCursor | None:
    raise StreamBusy(BUSY)


def test_ingest_into_a_stream_another_ingester_holds_is_one_red_line(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ResilientWriter, "read_cursor", _stream_busy)
    result = cli.invoke(app, ["ingest", "--source", str(CAPTURE), "--no-progress"], color=True)
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.stderr
    one_line = " ".join(BUSY.split())
    assert result.stderr == f"\x1b[31mteston: {one_line}\x1b[0m\n"
    assert result.stdout == ""


def test_up_with_its_stream_held_by_another_ingester_is_one_red_line(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STREAM_URL", f"http://127.0.0.1:{_closed_port()}/v2/stream/recentchange")
    monkeypatch.setattr(ResilientWriter, "read_cursor", _stream_busy)
    result = cli.invoke(app, ["up"], color=True)
    assert result.exit_code == 1
    assert "Traceback" not in result.stderr
    # Besides it, `up` only says that it runs without the bot (no DISCORD_TOKEN).
    assert _error_lines(result.stderr)[-1] == f"\x1b[31mteston: {' '.join(BUSY.split())}\x1b[0m"


def test_up_with_its_metrics_port_taken_is_one_line_naming_metrics_port(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STREAM_URL", f"http://127.0.0.1:{_closed_port()}/v2/stream/recentchange")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setenv("METRICS_PORT", str(port))
        result = cli.invoke(app, ["up"])
    assert result.exit_code == 1
    assert "Traceback" not in result.stderr
    assert _error_lines(result.stderr)[-1].startswith(
        f"teston: METRICS_PORT {port} on 127.0.0.1 cannot be used ("
    )


def test_a_second_up_is_told_about_the_stream_before_the_metrics_port(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STREAM_URL", f"http://127.0.0.1:{_closed_port()}/v2/stream/recentchange")
    monkeypatch.setattr(ResilientWriter, "read_cursor", _stream_busy)
    with socket.socket() as taken:  # what the first `up` serves its metrics on
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setenv("METRICS_PORT", str(taken.getsockname()[1]))
        result = cli.invoke(app, ["up"])
    assert result.exit_code == 1
    assert _error_lines(result.stderr)[-1] == f"teston: {' '.join(BUSY.split())}"
