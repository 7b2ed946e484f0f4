"""Parsing of the bot's commands: the original syntax, the additions, and every way to get it wrong."""

from __future__ import annotations

from datetime import date

import pytest

from bot.argument_text import shown
from bot.arguments import parse_command
from bot.lookup_arguments import help_request, recent_request, setlang_request, stats_request
from bot.requests import (
    Command,
    HelpRequest,
    RecentRequest,
    Scope,
    SetLanguageRequest,
    StatsRequest,
    UsageError,
)

TODAY = date(2025, 5, 3)


def parse(text: str) -> object:
    return parse_command(text, prefix="!", today=TODAY)


def problem(text: str) -> UsageError:
    with pytest.raises(UsageError) as caught:
        parse(text)
    return caught.value


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("!recent", RecentRequest()),
        ("!recent 5", RecentRequest(count=5)),
        ("!recent en", RecentRequest(language="en")),
        ("!recent en 20", RecentRequest(language="en", count=20)),
        ("!recent 20 en", RecentRequest(language="en", count=20)),
        ("!recent en 20 bots", RecentRequest(language="en", count=20, include_bots=True)),
        ("!recent categorize", RecentRequest(include_categorize=True)),
        ("!recent de all", RecentRequest(language="de", include_bots=True, include_categorize=True)),
        ("!recent 1", RecentRequest(count=1)),
        ("!recent 100", RecentRequest(count=100)),
        ("!recent 101", RecentRequest(count=100, asked=101)),
        ("!recent 99999999999999999999", RecentRequest(count=100, asked=99999999999999999999)),
        ("!RECENT EN 3", RecentRequest(language="EN", count=3)),
        ('!recent "en" 3', RecentRequest(language="en", count=3)),
        ("!recent   en    3  ", RecentRequest(language="en", count=3)),
        ("recent en 3", RecentRequest(language="en", count=3)),
        ("/recent en 3", RecentRequest(language="en", count=3)),
    ],
)
def test_recent_forms(text: str, expected: RecentRequest) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("!stats 2025-02-04", StatsRequest(date(2025, 2, 4))),
        ("!stats 2025-02-04 en", StatsRequest(date(2025, 2, 4), "en")),
        ("!stats en 2025-02-04", StatsRequest(date(2025, 2, 4), "en")),
        ("!stats 2001-01-01 en", StatsRequest(date(2001, 1, 1), "en")),
        ("!stats 2025-05-03", StatsRequest(TODAY)),
        ("!stats today de", StatsRequest(TODAY, "de")),
        ("!stats yesterday", StatsRequest(date(2025, 5, 2))),
        ("!Stats 2024-02-29 zh-hans", StatsRequest(date(2024, 2, 29), "zh-hans")),
    ],
)
def test_stats_forms(text: str, expected: StatsRequest) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("!setLang es", SetLanguageRequest("es")),
        ("!setlang es", SetLanguageRequest("es")),
        ("!SETLANG es", SetLanguageRequest("es")),
        ("!setLang es guild", SetLanguageRequest("es", Scope.GUILD)),
        ("!setLang es server", SetLanguageRequest("es", Scope.GUILD)),
        ("!setLang guild es", SetLanguageRequest("es", Scope.GUILD)),
        ("!setLang", SetLanguageRequest()),
        ("!help", HelpRequest()),
        ("!help stats", HelpRequest(Command.STATS)),
        ("!help !setLang", HelpRequest(Command.SETLANG)),
    ],
)
def test_setlang_and_help_forms(text: str, expected: object) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("text", "command", "message"),
    [
        ("!stats", Command.STATS, "Which day? Give a date such as 2025-02-04."),
        ("!stats 2025-02-30", Command.STATS, "'2025-02-30' is not a real day."),
        ("!stats 2023-02-29 en", Command.STATS, "'2023-02-29' is not a real day."),
        ("!stats 2025-13-01", Command.STATS, "'2025-13-01' is not a real day."),
        ("!stats 2000-12-31", Command.STATS, "2000-12-31 is before Wikipedia began (2001)."),
        ("!stats 0001-01-01", Command.STATS, "0001-01-01 is before Wikipedia began (2001)."),
        ("!stats 2025-05-04", Command.STATS, "2025-05-04 is in the future (today is 2025-05-03 UTC)."),
        (
            "!stats 04/02/2025",
            Command.STATS,
            "'04/02/2025' is not a date; write it as yyyy-mm-dd, e.g. 2025-02-04.",
        ),
        (
            "!stats 2025-2-4",
            Command.STATS,
            "'2025-2-4' is not a date; write it as yyyy-mm-dd, e.g. 2025-02-04.",
        ),
        ("!stats 2025-02-04 en fr", Command.STATS, "Unexpected extra argument 'fr'."),
        ("!stats 2025-02-04 2025-02-05", Command.STATS, "Unexpected extra argument '2025-02-05'."),
        ("!recent 0", Command.RECENT, "The number of changes must be from 1 to 100."),
        ("!recent -5", Command.RECENT, "The number of changes must be from 1 to 100."),
        ("!recent 2.5", Command.RECENT, "'2.5' is not a whole number of changes."),
        ("!recent 1e3", Command.RECENT, "'1e3' is not a whole number of changes."),
        ("!recent en 5 6", Command.RECENT, "Give one number of changes, not '6' as well."),
        ("!recent en fr", Command.RECENT, "Unexpected extra argument 'fr'."),
        ("!setLang es fr", Command.SETLANG, "Unexpected extra argument 'fr'."),
        ("!setLang guild", Command.SETLANG, "Which language? Give a code such as de or zh-hans."),
        ("!setLang server", Command.SETLANG, "Which language? Give a code such as de or zh-hans."),
        ("!help stats recent", Command.HELP, "Unexpected extra argument 'recent'."),
        ("!help nope", Command.HELP, "There is no command 'nope'."),
        ("!nope", None, "Unknown command 'nope'."),
        ("!", None, "No command given."),
    ],
)
def test_every_mistake_gets_one_clear_problem(text: str, command: Command | None, message: str) -> None:
    error = problem(text)
    assert (error.command, error.problem) == (command, message)


def test_very_long_input_is_refused_before_parsing() -> None:
    error = problem("!recent " + "x" * 5000)
    assert error.command is Command.RECENT
    assert error.problem == "That is too long (5000 characters; at most 200)."


def test_a_long_word_is_refused_and_not_echoed_whole() -> None:
    error = problem("!stats 2025-02-04 " + "y" * 150)
    assert error.problem == "'" + "y" * 39 + "…' is too long."


def test_echoed_text_loses_control_characters_and_is_cut() -> None:
    assert shown("a\nb\x00c\u202e") == "'abc'"
    assert shown("z" * 100) == "'" + "z" * 39 + "…'"


def test_markdown_and_mentions_pass_through_parsing_verbatim() -> None:
    # Escaping is rendering's job; parsing keeps the text so the catalog sees what was typed.
    assert parse("!recent @everyone") == RecentRequest(language="@everyone")
    assert problem("!stats **2025-02-04**").problem.startswith("Which day?")


def test_other_prefixes_can_be_accepted_too() -> None:
    # `teston ask` with COMMAND_PREFIX=? takes `?stats`, the original `!stats`, and `stats`.
    for text in ("?stats 2025-02-04", "!stats 2025-02-04", "stats 2025-02-04", "/stats 2025-02-04"):
        assert parse_command(text, prefix="?", today=TODAY, also=("!",)) == StatsRequest(date(2025, 2, 4))
    assert parse_command("!!help", prefix="!!", today=TODAY, also=("!",)) == HelpRequest()
    with pytest.raises(UsageError, match="Unknown command '!stats'"):
        parse_command("!stats 2025-02-04", prefix="?", today=TODAY)


def test_slash_options_are_checked_like_text() -> None:
    assert recent_request("en", 20, include_bots=True, include_categorize=False) == RecentRequest(
        "en", 20, include_bots=True
    )
    assert recent_request(None, None, include_bots=False, include_categorize=False) == RecentRequest()
    assert recent_request(None, 500, include_bots=False, include_categorize=False).asked == 500
    with pytest.raises(UsageError, match="from 1 to 100"):
        recent_request(None, 0, include_bots=False, include_categorize=False)
    assert stats_request("2025-02-04", "en", today=TODAY) == StatsRequest(date(2025, 2, 4), "en")
    with pytest.raises(UsageError, match="not a real day"):
        stats_request("2025-02-30", None, today=TODAY)
    with pytest.raises(UsageError, match="too long"):
        stats_request("2" * 500, None, today=TODAY)
    assert setlang_request("de", for_guild=True) == SetLanguageRequest("de", Scope.GUILD)
    with pytest.raises(UsageError, match="empty"):
        setlang_request("  ", for_guild=False)
    with pytest.raises(UsageError, match="Which language"):
        setlang_request(None, for_guild=True)
    assert setlang_request(None, for_guild=False) == SetLanguageRequest()
    assert help_request("recent") == HelpRequest(Command.RECENT)
    assert help_request(None) == HelpRequest()
