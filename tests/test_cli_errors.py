"""What a user sees when something goes wrong: one line, no traceback, no password or token."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from teston.cli import app
from teston.core.redaction import RedactingFilter, redact


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in {"DB_ADDR", "DATABASE_URL", "LOG_LEVEL"}}
    base["PYTHONPATH"] = str(Path(__file__).parent.parent)
    return subprocess.run(
        [sys.executable, "-m", "teston", *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_an_unusable_home_is_one_line_naming_the_log_file(tmp_path: Path) -> None:
    result = _run("db", "url", TESTON_HOME="/proc/nope", TMPDIR=str(tmp_path))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "│" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    log_file = tmp_path / f"teston-{os.getuid()}" / "teston.log"
    assert lines[0] == f"teston: no such file or directory: /proc/nope (full trace in {log_file})"
    assert "Traceback (most recent call last)" in log_file.read_text()


def test_log_level_debug_prints_the_trace(tmp_path: Path) -> None:
    result = _run("db", "url", TESTON_HOME="/proc/nope", TMPDIR=str(tmp_path), LOG_LEVEL="DEBUG")
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("teston: no such file or directory: /proc/nope")


def test_an_unknown_revision_is_one_line(db_url: str, monkeypatch: object) -> None:
    result = CliRunner().invoke(app, ["db", "upgrade", "nonexistent"], env={"DB_ADDR": db_url})
    assert result.exit_code == 2
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Can't locate revision identified by 'nonexistent' (the newest revision is" in result.output


def test_a_malformed_db_addr_is_not_echoed_with_its_password() -> None:
    result = _run("db", "url", DB_ADDR="host=db password=s3cret foo")
    assert result.returncode == 2
    assert "DB_ADDR" in result.stderr
    assert "s3cret" not in result.stderr + result.stdout
    assert "password=***" in result.stderr


def test_a_refused_connection_does_not_print_the_password() -> None:
    # A port nobody listens on (1) and a URL shaped so psycopg's error quotes it back.
    result = _run("db", "upgrade", DB_ADDR="postgresql://bot:s3cret@127.0.0.1:1/teston?connect_timeout=5")
    assert result.returncode == 1
    assert "teston: cannot use PostgreSQL" in result.stderr
    assert "s3cret" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_secrets_are_masked_in_text() -> None:
    token = "MTIzNDU2Nzg5MDEyMzQ1Njc4OTA.GhIjKl.abcdefghijklmnopqrstuvwxyz0123"
    assert redact("host=db password=s3cret port=5432") == "host=db password=*** port=5432"
    assert redact("host=db password='s3 cret' x") == "host=db password=*** x"
    assert redact("postgresql://bot:s3cret@db:5432/wiki") == "postgresql://bot:***@db:5432/wiki"
    assert (
        redact("postgresql://postgres@127.0.0.1:5432/teston") == "postgresql://postgres@127.0.0.1:5432/teston"
    )
    assert redact(f"login failed with {token}") == "login failed with ***"
    assert redact("the token is abcd-secret-value", ["abcd-secret-value"]) == "the token is ***"


def test_log_records_are_masked_before_they_are_written(caplog: object) -> None:
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = Keep()
    handler.addFilter(RedactingFilter(["tok-en-1234"]))
    logger = logging.getLogger("teston.test.redaction")
    logger.addHandler(handler)
    try:
        logger.warning("connecting to %s with %s", "postgresql://u:pw99@h/d", "tok-en-1234")
        try:
            raise RuntimeError("conninfo host=h password=pw99")
        except RuntimeError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    assert records[0] == "connecting to postgresql://u:***@h/d with ***"
    assert "pw99" not in records[1]
    assert "password=***" in records[1]
