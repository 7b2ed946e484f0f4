"""`teston ask` on the recorded captures, ingested and rolled up by the real pipeline.

Expected figures come from a plain pass over the captures' JSON lines, never from the code under test.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from analytics import bookkeeping, rollup
from teston.cli import app
from teston.cli.service import discord_bot
from teston.core import database
from teston.core.settings import load_settings
from tests.bot_fixtures import CATALOG
from tests.replays import ingest_path

DATA = Path(__file__).parent / "data"
CAPTURES = [
    DATA / "2021-08-27_all-wikis_1950.jsonl",
    DATA / "2023-07-29_enwiki_100.jsonl",
    DATA / "2025-05-03_sample_144.jsonl",
]


def capture_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def day_of(row: dict[str, Any]) -> date:
    return datetime.fromtimestamp(row["timestamp"], UTC).date()


def is_anonymous(user: str) -> bool:
    """Logged-out editors are named by their IP address (or, since 2025, a `~` temporary account)."""
    if user.startswith("~2"):
        return True
    try:
        ipaddress.ip_address(user)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Expected:
    changes: int
    edits: int
    new_pages: int
    bots: int
    anonymous: int
    humans: int
    bytes_added: int
    bytes_removed: int
    editors: int
    busiest_hour: int
    busiest_count: int


def expected_day(wiki: str, day: date) -> Expected:
    rows = [
        row for path in CAPTURES for row in capture_rows(path) if row["wiki"] == wiki and day_of(row) == day
    ]
    edits = [row for row in rows if row["type"] in ("edit", "new")]
    deltas = [row["length"]["new"] - (row["length"].get("old") or 0) for row in edits if "length" in row]
    hours = Counter(datetime.fromtimestamp(row["timestamp"], UTC).hour for row in rows)
    busiest = max(sorted(hours), key=lambda hour: hours[hour])
    anonymous = sum(1 for row in rows if not row["bot"] and is_anonymous(row["user"]))
    bots = sum(1 for row in rows if row["bot"])
    return Expected(
        changes=len(rows),
        edits=len(edits),
        new_pages=sum(1 for row in rows if row["type"] == "new"),
        bots=bots,
        anonymous=anonymous,
        humans=len(rows) - bots - anonymous,
        bytes_added=sum(d for d in deltas if d > 0),
        bytes_removed=sum(-d for d in deltas if d < 0),
        editors=len({row["user"] for row in rows}),
        busiest_hour=busiest,
        busiest_count=hours[busiest],
    )


@pytest.fixture
def captured(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The captures ingested and every day rolled up (all are closed days, so final), as `teston` sees it."""
    for path in CAPTURES:
        ingest_path(db_url, path, catalog=CATALOG)
    with psycopg.connect(db_url) as conn:
        for day in bookkeeping.raw_days(conn):
            rollup.rollup_day(conn, tmp_path / "exports", day)
    monkeypatch.setenv("DB_ADDR", db_url)
    monkeypatch.setenv("EXPORT_DIR", str(tmp_path / "exports"))
    return db_url


def ask(*arguments: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["ask", *arguments])
    return result.exit_code, result.stdout


def test_stats_prints_the_exact_figures_of_the_capture(captured: str) -> None:
    expected = expected_day("enwiki", date(2021, 8, 27))
    assert expected.changes == 210  # the capture itself: 210 of its 1,950 events are en.wikipedia.org's

    code, out = ask("!stats 2021-08-27 en")

    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == f"On 2021-08-27, there were {expected.changes} changes for language 'en'."
    assert lines[1] == "en.wikipedia.org on 2021-08-27:"
    figures = dict(
        line.strip().split(": ", 1) for line in lines[2:] if line.startswith("  ") and ": " in line
    )
    assert figures["Edits"] == f"{expected.edits:,}"
    assert figures["New pages"] == f"{expected.new_pages:,}"
    assert figures["Bots"] == f"{expected.bots:,}"
    assert figures["Anonymous"] == f"{expected.anonymous:,}"
    assert figures["Humans"] == f"{expected.humans:,}"
    assert figures["Bytes added"] == f"+{expected.bytes_added:,}"
    assert figures["Bytes removed"] == f"−{expected.bytes_removed:,}"
    assert figures["Editors"] == f"{expected.editors:,}"
    hour = expected.busiest_hour
    assert figures["Busiest hour"] == f"{hour:02d}:00–{hour + 1:02d}:00 UTC ({expected.busiest_count:,})"


def test_stats_of_other_captures_and_wikis(captured: str) -> None:
    for command, wiki, day, label in (
        ("!stats 2023-07-29", "enwiki", date(2023, 7, 29), "en"),
        ("stats 2021-08-27 wikidata", "wikidatawiki", date(2021, 8, 27), "wikidata"),
        ("!stats 2025-05-03 commons", "commonswiki", date(2025, 5, 3), "commons"),
    ):
        code, out = ask(command)
        count = expected_day(wiki, day).changes
        assert code == 0, out
        assert (
            out.splitlines()[0] == f"On {day.isoformat()}, there were {count} changes for language '{label}'."
        )


def test_recent_prints_the_five_newest_non_bot_changes(captured: str) -> None:
    rows = [
        row
        for path in CAPTURES
        for row in capture_rows(path)
        if row["wiki"] == "enwiki" and not row["bot"] and row["type"] != "categorize"
    ]
    rows.sort(key=lambda row: (row["timestamp"], row.get("id") is not None, row.get("id") or 0), reverse=True)

    code, out = ask("!recent en 5")

    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == (
        "The 5 newest changes on en.wikipedia.org, newest first (bot changes and category changes left out)."
    )
    assert len(lines) == 6
    for line, row in zip(lines[1:], rows[:5], strict=True):
        moment, title, user, _details, comment, link = line.split(" | ")
        assert moment == f"{datetime.fromtimestamp(row['timestamp'], UTC):%Y-%m-%d %H:%M:%S} UTC"
        assert (title, user) == (row["title"], row["user"])
        assert comment == (" ".join(row["comment"].split()) or "-")
        if row["type"] == "edit":
            assert link == (
                f"https://en.wikipedia.org/w/index.php?diff={row['revision']['new']}&oldid={row['revision']['old']}"
            )


def test_a_day_without_data_and_bad_arguments(captured: str) -> None:
    assert ask("!stats 2021-08-26 en") == (
        0,
        "No stats found for en on 2021-08-26\nTestON was not collecting changes that day.\n",
    )
    assert ask("!stats 2021-08-27 xx") == (
        2,
        "Unknown language 'xx'. Usage: !stats <yyyy-mm-dd>|<from>..<to> [lang]\n",
    )
    code, out = ask("!stats 2021-02-30")
    assert (code, out) == (
        2,
        "'2021-02-30' is not a real day. Usage: !stats <yyyy-mm-dd>|<from>..<to> [lang]\n",
    )


def test_language_defaults_follow_the_user(captured: str) -> None:
    assert ask("!setLang de", "--user-id", "42") == (
        0,
        "Your default language is now 'de' (de.wikipedia.org).\n",
    )
    code, out = ask("!stats 2021-08-27", "--user-id", "42")
    assert code == 0
    count = expected_day("dewiki", date(2021, 8, 27)).changes
    assert out.splitlines()[0] == f"On 2021-08-27, there were {count} changes for language 'de'."


def test_setlang_without_a_user_names_the_option(captured: str) -> None:
    assert ask("!setLang de") == (
        2,
        "Only a Discord user can have a default language. Usage: !setLang <code> [guild]\n"
        "On the terminal, name the Discord user with --user-id: teston ask --user-id <id> '!setLang de'\n",
    )
    code, out = ask("!setLang de guild")
    assert code == 2
    assert out.splitlines()[-1] == (
        "On the terminal, name the Discord server with --guild-id: "
        "teston ask --guild-id <id> '!setLang de guild'"
    )


def test_invisible_format_characters_are_ignored(captured: str) -> None:
    code, out = ask("!recent\u200b en 5")
    assert code == 0, out
    assert out == ask("!recent en 5")[1]
    assert out.startswith("The 5 newest changes on en.wikipedia.org")


def test_bot_without_a_token_says_how_to_get_one() -> None:
    result = CliRunner().invoke(app, ["bot"])
    assert result.exit_code == 2
    assert "DISCORD_TOKEN is not set" in result.stderr
    assert "https://discord.com/developers/applications" in result.stderr
    assert 'teston ask "!stats 2021-08-27 en"' in result.stderr


def test_up_without_a_token_runs_without_the_bot_and_says_why(capsys: pytest.CaptureFixture[str]) -> None:
    settings = load_settings(env_file=None)

    assert discord_bot(settings, "postgresql://unused", CATALOG) == []

    message = capsys.readouterr().err
    assert "DISCORD_TOKEN is not set, so the Discord bot is not running" in message
    assert 'teston ask "!recent en 5"' in message


def run_teston(*arguments: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m teston …` as a script runs it: its own process, stdout and stderr apart."""
    return subprocess.run(
        [sys.executable, "-m", "teston", *arguments],
        env={**os.environ, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_successful_ask_writes_nothing_on_stderr(captured: str, tmp_path: Path) -> None:
    result = run_teston("ask", "!stats 2021-08-27 en", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("On 2021-08-27, there were 210 changes for language 'en'.")
    assert result.stderr == ""


def test_ask_never_migrates_and_says_how_to(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    database.downgrade(db_url, "base")
    monkeypatch.setenv("DB_ADDR", db_url)

    result = CliRunner().invoke(app, ["ask", "!recent en 5"])

    assert result.exit_code == 1
    assert "the database has no TestON tables yet" in result.stderr
    assert "Run `teston db upgrade`" in result.stderr
    assert database.current_revision(db_url) is None  # untouched: `ask` needs no rights to change it


def test_help_and_mistakes_are_answered_without_a_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_ADDR", "postgresql://nobody@127.0.0.1:1/nothing")
    code, out = ask("!help")
    assert code == 0
    assert out.startswith("!recent [lang] [n] [bots] — the newest changes of a wiki")
    assert ask("!stats 2021-02-30") == (
        2,
        "'2021-02-30' is not a real day. Usage: !stats <yyyy-mm-dd>|<from>..<to> [lang]\n",
    )


def test_ask_takes_the_original_prefix_the_configured_one_or_none(
    captured: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COMMAND_PREFIX", "?")
    first = "On 2021-08-27, there were 210 changes for language 'en'."
    for text in ("!stats 2021-08-27 en", "?stats 2021-08-27 en", "stats 2021-08-27 en"):
        code, out = ask(text)
        assert (code, out.splitlines()[0]) == (0, first), text
    # Replies speak the bot's prefix.
    assert ask("!stats 2021-02-30") == (
        2,
        "'2021-02-30' is not a real day. Usage: ?stats <yyyy-mm-dd>|<from>..<to> [lang]\n",
    )


@pytest.mark.parametrize("command", [["ask", "!stats 2021-08-27"], ["bot"]])
def test_an_unreachable_database_is_one_line_naming_the_setting(command: list[str], tmp_path: Path) -> None:
    result = run_teston(
        *command,
        cwd=tmp_path,
        DB_ADDR="postgresql://x@127.0.0.1:1/x",
        DISCORD_TOKEN="MTIz.fake.token",
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert "DB_ADDR / DATABASE_URL" in line
    assert "Connection refused" in line
