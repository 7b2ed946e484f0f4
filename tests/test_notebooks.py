"""The notebooks execute on exports built from the test data, and compute the right figures."""

from __future__ import annotations

import ipaddress
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import nbformat
import psycopg
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from analytics import bookkeeping, rollup
from tests.bot_fixtures import CATALOG
from tests.replays import ingest_path

ROOT = Path(__file__).parent.parent
NOTEBOOKS = ROOT / "notebooks"
DATA = Path(__file__).parent / "data"
CAPTURES = ("2021-08-27_all-wikis_1950.jsonl", "2025-05-03_sample_144.jsonl")


def _events() -> list[dict[str, Any]]:
    return [json.loads(line) for name in CAPTURES for line in (DATA / name).read_text().splitlines() if line]


def _kind(event: dict[str, Any]) -> str:
    if event["bot"]:
        return "bot_changes"
    user = event.get("user") or ""
    if re.fullmatch(r"~[0-9]{4}-.*", user):
        return "anonymous_changes"
    try:
        ipaddress.ip_address(user)
    except ValueError:
        return "human_changes"
    return "anonymous_changes"


@pytest.fixture
def export_dir(db_url: str, conn: psycopg.Connection, tmp_path: Path) -> Path:
    for name in CAPTURES:
        ingest_path(db_url, DATA / name)
    directory = tmp_path / "exports"
    for day in bookkeeping.raw_days(conn):
        rollup.rollup_day(conn, directory, day)
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


def _bot_label(dbname: str) -> str:
    """What the bot calls a wiki (`!stats … en` is en.wikipedia.org only), from the catalog."""
    wiki = CATALOG.by_dbname(dbname)
    return wiki.label if wiki is not None else dbname


def test_daily_activity_by_language(export_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    got = run_notebook(
        "daily_activity_by_language.ipynb",
        export_dir,
        monkeypatch,
        "{'total': total_changes, 'top': by_language.head(3).rows(named=True),"
        " 'languages': dict(zip(by_language['language'], by_language['changes']))}",
    )
    events = _events()
    assert got["total"] == len(events)
    assert got["total"] == 1950 + 144
    # A language is one wiki, named as the bot names it: `en` is English Wikipedia, not every English project.
    expected = Counter(_bot_label(event["wiki"]) for event in events)
    assert got["languages"] == dict(expected)
    assert got["languages"]["en"] == sum(1 for event in events if event["wiki"] == "enwiki")
    assert any(label.startswith("en.") for label in expected)  # other English projects exist, apart
    bots = Counter(_bot_label(event["wiki"]) for event in events if event["bot"])
    ranked = sorted(expected.items(), key=lambda item: (-item[1], item[0]))[:3]
    assert [(row["language"], row["changes"], row["bot_changes"]) for row in got["top"]] == [
        (label, changes, bots[label]) for label, changes in ranked
    ]


def test_bots_humans_hours_pages(export_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    got = run_notebook("bots_humans_hours_pages.ipynb", export_dir, monkeypatch, "kind_totals")
    # Named as analytics/README.md names the figures.
    expected: dict[str, int] = {"bot_changes": 0, "anonymous_changes": 0, "human_changes": 0}
    for event in _events():
        expected[_kind(event)] += 1
    assert got == expected


# Each notebook once, one with the directory missing and one with it empty (a kernel start costs seconds).
@pytest.mark.parametrize(
    ("name", "state"),
    [("daily_activity_by_language.ipynb", "missing"), ("bots_humans_hours_pages.ipynb", "empty")],
)
def test_without_exports_a_notebook_says_to_run_the_rollup_first(
    name: str, state: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    export_dir = tmp_path / "exports"
    if state == "empty":
        export_dir.mkdir()
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    monkeypatch.setenv("TESTON_EXPORT_DIR", str(export_dir))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    client = NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    )
    with pytest.raises(CellExecutionError) as failure:
        client.execute()
    assert failure.value.ename == "FileNotFoundError"
    assert failure.value.evalue == (
        f"No exported days in {export_dir}: run `teston rollup --all` first (it exports every stored day "
        "to Parquet), or point TESTON_EXPORT_DIR at an export directory."
    )
