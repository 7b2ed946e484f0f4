"""Several `teston` processes on one TESTON_HOME: started together, stopped under each other."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg

from teston.embedded import EmbeddedPostgres

DATA = Path(__file__).parent / "data"


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DB_ADDR", "DATABASE_URL", "LOG_LEVEL"}}
    return {**env, "TESTON_HOME": str(home), "PYTHONPATH": str(Path(__file__).parent.parent), **extra}


def _teston(*args: str) -> list[str]:
    return [sys.executable, "-m", "teston", *args]


def test_processes_started_together_on_a_fresh_home_all_succeed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    files = [DATA / "2023-07-29_enwiki_100.jsonl", DATA / "2025-05-03_sample_144.jsonl"]
    commands = [_teston("ingest", "--source", str(f), "--no-progress") for f in files]
    commands.append(_teston("db", "upgrade"))
    processes = [
        subprocess.Popen(c, env=_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for c in commands
    ]
    results = [(p, *p.communicate(timeout=240)) for p in processes]
    for process, _out, err in results:
        assert process.returncode == 0, err
        assert "Traceback" not in err
    ingested = [int(re.search(r"ingested (\d+)", out).group(1)) for _, out, _ in results[:2]]  # type: ignore[union-attr]
    assert ingested == [100, 144]
    with EmbeddedPostgres(home / "postgres") as server, psycopg.connect(server.url) as conn:
        stored = conn.execute("SELECT count(*) FROM recent_changes").fetchone()
        revision = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    assert stored == (244,)
    assert len(revision) == 1
