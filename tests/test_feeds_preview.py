"""`teston feed preview` on the 2021-08-27 capture, ingested by the real ingester.

The expected changes come from a plain pass over the capture's JSON lines.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from teston.cli import app
from tests.bot_fixtures import CATALOG
from tests.replays import ingest_path

CAPTURE = Path(__file__).parent / "data" / "2021-08-27_all-wikis_1950.jsonl"


def expected_titles() -> list[str]:
    """enwiki's human edits and creations in articles, not minor, changing at least 50 bytes, by time."""
    rows = [json.loads(line) for line in CAPTURE.read_text(encoding="utf-8").splitlines() if line.strip()]
    chosen = []
    for row in rows:
        length = row.get("length") or {}
        if (
            row["wiki"] == "enwiki"
            and row["type"] in ("edit", "new")
            and row["namespace"] == 0
            and not row["bot"]
            and not row.get("minor")
            and length.get("new") is not None
            and abs(length["new"] - (length.get("old") or 0)) >= 50
        ):
            chosen.append(row)
    chosen.sort(key=lambda row: (row["timestamp"], row.get("id") is None, row.get("id") or 0))
    return [row["title"] for row in chosen]


@pytest.fixture
def captured(db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    ingest_path(db_url, CAPTURE, catalog=CATALOG)
    monkeypatch.setenv("DB_ADDR", db_url)
    return db_url


def preview(*arguments: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["feed", "preview", *arguments])
    return result.exit_code, result.stdout, result.stderr


def test_preview_prints_the_count_then_the_posts_of_the_day(captured: str) -> None:
    titles = expected_titles()
    code, out, _ = preview("en type=edit,new ns=0 minor=no min=50", "--date", "2021-08-27", "--limit", "5")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"{len(titles)} changes match"
    assert len(lines) == 6
    assert [line.split(" | ")[1] for line in lines[1:]] == titles[:5]
    assert all(
        line.startswith("2021-08-27 13:") and "https://en.wikipedia.org/" in line for line in lines[1:]
    )
    code, out, _ = preview("!watch en type=edit,new ns=0 minor=no min=50", "--date", "2021-08-27")
    assert code == 0
    assert [line.split(" | ")[1] for line in out.splitlines()[1:]] == titles
    code, out, _ = preview("en", "--date", "2021-08-26")
    assert (code, out) == (0, "0 changes match\n")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["en type=move", "--date", "2021-08-27"], "Unknown change type 'move'"),
        (["en", "--date", "27/08/2021"], "is not a day"),
        (["xx-nowiki", "--date", "2021-08-27"], "unknown language"),
        (["", "--date", "2021-08-27"], "Which wiki?"),
    ],
)
def test_preview_refuses_bad_arguments_in_one_line(arguments: list[str], message: str) -> None:
    code, out, err = preview(*arguments)
    assert code == 2
    assert out == ""
    assert message in err
    assert len(err.strip().splitlines()) == 1
