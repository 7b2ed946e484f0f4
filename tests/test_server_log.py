"""The embedded server's log: no ERROR for duplicates the writer expects, and rotated by size."""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from teston.core.embedded import LOGGING, EmbeddedPostgres
from teston.core.wikis import WikiCatalog
from tests.conftest import DATA_DIR, ExternalServer
from tests.replays import ingest_path

CAPTURE = DATA_DIR / "2021-08-27_all-wikis_1950.sse"


def _server_log(server: EmbeddedPostgres, url: str) -> str:
    """The server's log so far, once a marker logged now has reached it (the collector writes behind)."""
    marker = f"log-marker-{uuid.uuid4()}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DO $$ BEGIN RAISE WARNING '{marker}'; END $$")
    deadline = time.monotonic() + 60
    while True:
        text = "".join(p.read_text(errors="replace") for p in sorted(server.log_dir.glob("server-*.log")))
        if marker in text:
            return text
        assert time.monotonic() < deadline, "the marker never reached the server log"
        time.sleep(0.1)


def _errors(text: str) -> list[str]:
    return [line for line in text.splitlines() if "ERROR:" in line]


def test_a_duplicate_replay_logs_no_error_on_the_server(
    pg_server: EmbeddedPostgres | ExternalServer, db_url: str, tmp_path: Path
) -> None:
    if isinstance(pg_server, ExternalServer):
        pytest.skip("reads the embedded server's log")
    catalog = WikiCatalog.load()
    first = ingest_path(db_url, CAPTURE, catalog=catalog)
    assert first.ingested > 0
    before = _errors(_server_log(pg_server, db_url))
    again = tmp_path / "the-same-events.sse"  # another file, so another cursor: every event is stored already
    shutil.copy(CAPTURE, again)
    replay = ingest_path(db_url, again, catalog=catalog)
    assert (replay.ingested, replay.duplicates) == (0, first.ingested)
    assert _errors(_server_log(pg_server, db_url)) == before


def test_the_server_log_is_collected_into_files_rotated_by_size(
    pg_server: EmbeddedPostgres | ExternalServer,
) -> None:
    if isinstance(pg_server, ExternalServer):
        pytest.skip("reads the embedded server's settings")
    with psycopg.connect(pg_server.url) as conn:
        settings = dict(
            conn.execute(
                "SELECT name, setting || coalesce(unit, '') FROM pg_settings"
                " WHERE name IN ('logging_collector', 'log_rotation_size', 'log_directory')"
            ).fetchall()
        )
    assert settings == {"logging_collector": "on", "log_rotation_size": "10240kB", "log_directory": "log"}
    assert LOGGING["log_rotation_size"] == "10MB"
    assert list(pg_server.log_dir.glob("server-*.log"))
