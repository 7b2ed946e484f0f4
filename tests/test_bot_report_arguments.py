"""Parsing of `!chart`, `!top`, `!stats <from>..<to>` and the digest commands, and every mistake."""

from __future__ import annotations

from datetime import date, time

import pytest

from bot.answers import Problem
from bot.arguments import parse_command
from bot.lookup_arguments import stats_request
from bot.rendering import discord_reply, plain_text
from bot.report_arguments import chart_request, top_request
from bot.requests import (
    ChartRequest,
    Command,
    DigestRequest,
    DigestsRequest,
    RangeStatsRequest,
    TopList,
    TopRequest,
    UndigestRequest,
    UsageError,
)
from bot.subscription_arguments import digest_request, undigest_request

TODAY = date(2021, 8, 27)


def parse(text: str) -> object:
    return parse_command(text, prefix="!", today=TODAY)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("!chart", ChartRequest(first=date(2021, 7, 29), last=TODAY)),
        ("!chart en", ChartRequest(first=date(2021, 7, 29), last=TODAY, languages=("en",))),
        ("!chart en,de 7d", ChartRequest(first=date(2021, 8, 21), last=TODAY, languages=("en", "de"))),
        ("!chart 1d de", ChartRequest(first=TODAY, last=TODAY, languages=("de",))),
        (
            "!chart en 2021-08-01..2021-08-27",
            ChartRequest(first=date(2021, 8, 1), last=TODAY, languages=("en",)),
        ),
        ("!chart en 2021-08-20", ChartRequest(date(2021, 8, 20), date(2021, 8, 20), ("en",), hourly=True)),
        ("!chart en yesterday", ChartRequest(date(2021, 8, 26), date(2021, 8, 26), ("en",), hourly=True)),
        ("!top", TopRequest(day=TODAY)),
        ("!top en", TopRequest(day=TODAY, language="en")),
        ("!top en 2021-08-01 editors", TopRequest(date(2021, 8, 1), "en", TopList.EDITORS)),
        ("!top pages 2021-08-01", TopRequest(date(2021, 8, 1), None, TopList.PAGES)),
        ("!stats 2021-08-01..2021-08-27", RangeStatsRequest(date(2021, 8, 1), TODAY)),
        ("!stats de 2001-01-15..today", RangeStatsRequest(date(2001, 1, 15), TODAY, "de")),
        ("!digest en", DigestRequest(language="en", at=time(0, 30))),
        ("!digest 7:05 de", DigestRequest(language="de", at=time(7, 5))),
        ("!undigest 3", UndigestRequest(digest_id=3)),
        ("!undigest #3", UndigestRequest(digest_id=3)),
        ("!undigest wikidata", UndigestRequest(language="wikidata")),
        ("!digests", DigestsRequest()),
    ],
)
def test_accepted_forms(text: str, expected: object) -> None:
    assert parse(text) == expected


BAD = [
    # chart
    (
        "!chart en 2021-08-27..2021-08-01",
        Command.CHART,
        "The range '2021-08-27..2021-08-01' ends before it begins.",
    ),
    ("!chart en 2020-01-01..2021-08-27", Command.CHART, "A chart spans at most 366 days."),
    (
        "!chart en 2021-08-01..",
        Command.CHART,
        "'2021-08-01..' is not a range; write it as 2025-02-01..2025-02-07.",
    ),
    (
        "!chart en 2021-08-01..soon",
        Command.CHART,
        "'soon' is not a date; write it as yyyy-mm-dd, e.g. 2025-02-04.",
    ),
    ("!chart en 0d", Command.CHART, "The number of days must be from 1 to 366."),
    ("!chart en 400d", Command.CHART, "The number of days must be from 1 to 366."),
    ("!chart en 2021-08-28", Command.CHART, "2021-08-28 is in the future (today is 2021-08-27 UTC)."),
    ("!chart en 2021-02-30", Command.CHART, "'2021-02-30' is not a real day."),
    ("!chart en,,de", Command.CHART, "'en,,de' has an empty language; separate them with commas."),
    ("!chart en,de,fr,es,it,ja", Command.CHART, "A chart shows at most 5 languages."),
    ("!chart en,EN", Command.CHART, "'en,EN' names a language twice."),
    ("!chart en de", Command.CHART, "Unexpected extra argument 'de'."),
    ("!chart en 7d 7d", Command.CHART, "Unexpected extra argument '7d'."),
    ("!chart en 7x", Command.CHART, "'7x' is not a date; write it as yyyy-mm-dd, e.g. 2025-02-04."),
    # top
    ("!top en 2021-08-32", Command.TOP, "'2021-08-32' is not a real day."),
    ("!top en 2000-01-01", Command.TOP, "2000-01-01 is before Wikipedia began (2001)."),
    ("!top en de", Command.TOP, "Unexpected extra argument 'de'."),
    ("!top en pages editors", Command.TOP, "Unexpected extra argument 'editors'."),
    ("!top en 5", Command.TOP, "'5' is not a date; write it as yyyy-mm-dd, e.g. 2025-02-04."),
    # ranges
    (
        "!stats 2021-08-27..2021-08-01",
        Command.STATS,
        "The range '2021-08-27..2021-08-01' ends before it begins.",
    ),
    (
        "!stats ..2021-08-01",
        Command.STATS,
        "'..2021-08-01' is not a range; write it as 2025-02-01..2025-02-07.",
    ),
    (
        "!stats 2021-08-01..2021-09-01",
        Command.STATS,
        "2021-09-01 is in the future (today is 2021-08-27 UTC).",
    ),
    ("!stats 2021-08-01..2021-08-02 en de", Command.STATS, "Unexpected extra argument 'de'."),
    ("!stats 2021-08-01..2021-08-02 2021-08-03", Command.STATS, "Unexpected extra argument '2021-08-03'."),
    # digests
    ("!digest", Command.DIGEST, "Which language? Give a code such as en or de."),
    ("!digest 07:00", Command.DIGEST, "Which language? Give a code such as en or de."),
    ("!digest en 25:00", Command.DIGEST, "'25:00' is not a time of day."),
    ("!digest en 7h", Command.DIGEST, "'7h' is not a time; write it as HH:MM (UTC), e.g. 00:30."),
    ("!digest en de", Command.DIGEST, "Unexpected extra argument 'de'."),
    ("!digest en 07:00 08:00", Command.DIGEST, "Unexpected extra argument '08:00'."),
    ("!undigest", Command.UNDIGEST, "Which digest? Give its number (see digests) or its language."),
    ("!undigest 0", Command.UNDIGEST, "'0' is not a digest number."),
    ("!undigest 1 2", Command.UNDIGEST, "Unexpected extra argument '2'."),
    ("!digests en", Command.DIGESTS, "Unexpected extra argument 'en'."),
]


@pytest.mark.parametrize(("text", "command", "problem"), BAD)
def test_every_bad_argument_gets_one_usage_line(text: str, command: Command, problem: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse(text)
    assert (caught.value.command, caught.value.problem) == (command, problem)
    line = plain_text(Problem(caught.value.problem, caught.value.command), prefix="!")
    assert "\n" not in line
    usage = {
        Command.CHART: "!chart <lang>[,<lang>…] [<from>..<to>|<N>d|<yyyy-mm-dd>]",
        Command.TOP: "!top <lang> [yyyy-mm-dd] [pages|editors]",
        Command.STATS: "!stats <yyyy-mm-dd>|<from>..<to> [lang]",
        Command.DIGEST: "!digest <lang> [HH:MM]",
        Command.UNDIGEST: "!undigest <id|lang>",
        Command.DIGESTS: "!digests",
    }[command]
    assert line == f"{problem} Usage: {usage}"
    [message] = discord_reply(Problem(problem, command), prefix="!", slash=True).messages
    assert message.content.count("\n") == 0
    assert "Usage: /" in message.content


def test_slash_options_are_checked_like_text() -> None:
    assert chart_request("en,de", "7d", today=TODAY) == parse("!chart en,de 7d")
    assert chart_request(None, None, today=TODAY) == parse("!chart")
    assert top_request("en", "2021-08-01", "editors", today=TODAY) == parse("!top en 2021-08-01 editors")
    assert stats_request("2021-08-01..2021-08-27", "en", today=TODAY) == parse(
        "!stats 2021-08-01..2021-08-27 en"
    )
    assert digest_request("en", "07:15") == parse("!digest en 07:15")
    assert undigest_request("4") == parse("!undigest 4")
    for call, problem in (
        (lambda: chart_request("en de", None, today=TODAY), "Separate languages with commas, not spaces."),
        (lambda: chart_request("en", "0d", today=TODAY), "The number of days must be from 1 to 366."),
        (lambda: top_request("en", "tomorrow", None, today=TODAY), "'tomorrow' is not a date"),
        (lambda: digest_request("en", "99:99"), "'99:99' is not a time of day."),
        (lambda: undigest_request(""), "Which digest?"),
    ):
        with pytest.raises(UsageError) as caught:
            call()
        assert caught.value.problem.startswith(problem)
