"""The notebooks execute on exports built from the test data, and compute the right figures."""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Any

import nbformat
import psycopg
import pytest
from nbclient import NotebookClient

from analytics import rollup
from ingestion.replay import ingest_path

ROOT = Path(__file__).parent.parent
NOTEBOOKS = ROOT / "notebooks"
DATA = Path(__file__).parent / "data"
CAPTURES = ("2021-08-27_all-wikis_1950.jsonl", "2025-05-03_sample_144.jsonl")


def _events() -> list[dict[str, Any]]:
    return [json.loads(line) for name in CAPTURES for line in (DATA / name).read_text().splitlines() if line]


def _kind(event: dict[str, Any]) -> str:
    if event["bot"]:
        return "bot"
    user = event.get("user") or ""
    if re.fullmatch(r"~[0-9]{4}-.*", user):
        return "anonymous"
    try:
        ipaddress.ip_address(user)
    except ValueError:
        return "registered human"
    return "anonymous"


@pytest.fixture
def export_dir(db_url: str, conn: psycopg.Connection, tmp_path: Path) -> Path:
    for name in CAPTURES:
        ingest_path(db_url, DATA / name)
    directory = tmp_path / "exports"
    rollup.rollup_days(conn, directory, rollup.raw_days(conn))
    return directory


def run_notebook(name: str, export_dir: Path, monkeypatch: pytest.MonkeyPatch, expression: str) -> Any:
    """Execute a notebook, then evaluate `expression` in its kernel and return the value (JSON)."""
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), (
        f"{name} is committed with outputs"
    )
    check = f"import json as _json\nprint(_json.dumps({expression}))"
    notebook.cells.append(nbformat.v4.new_code_cell(check))
    monkeypatch.setenv("TESTON_EXPORT_DIR", str(export_dir))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    client = NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    )
    client.execute()
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            assert output.get("output_type") != "error", output
    printed = "".join(o.get("text", "") for o in notebook.cells[-1].outputs if o.get("name") == "stdout")
    return json.loads(printed)


def test_daily_activity_by_language(export_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    got = run_notebook(
        "daily_activity_by_language.ipynb",
        export_dir,
        monkeypatch,
        "{'total': total_changes, 'rows': daily.height, 'top': by_language.row(0)}",
    )
    events = _events()
    assert got["total"] == len(events)
    assert got["total"] == 1950 + 144


def test_bots_humans_hours_pages(export_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    got = run_notebook("bots_humans_hours_pages.ipynb", export_dir, monkeypatch, "kind_totals")
    expected: dict[str, int] = {"bot": 0, "anonymous": 0, "registered human": 0}
    for event in _events():
        expected[_kind(event)] += 1
    assert got == expected
