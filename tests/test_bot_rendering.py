"""Rendering of answers: exact sentences, links, escaping, and Discord's size limits."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from bot.answers import (
    Absence,
    Change,
    DayFigures,
    DayRollup,
    DayStats,
    Failure,
    Help,
    LanguageDefaults,
    LanguageSet,
    NoStats,
    Problem,
    RecentChanges,
    TopPage,
)
from bot.links import diff_url, page_url
from bot.lookup_rendering import busiest_hour
from bot.markdown import clean, escape
from bot.messages import (
    EMBED_DESCRIPTION_LIMIT,
    EMBED_TOTAL_LIMIT,
    EMBEDS_PER_MESSAGE,
    MESSAGE_LIMIT,
    Embed,
    pack,
    split_lines,
)
from bot.rendering import discord_reply, language_choices, plain_text
from bot.requests import Command, Scope
from teston.core.statuses import DayStatus
from teston.core.wikis import WikiCatalog

CATALOG = WikiCatalog.load()
EN = CATALOG.resolve("en")
MOMENT = datetime(2021, 8, 27, 13, 20, 17, tzinfo=UTC)


def change(**overrides: object) -> Change:
    fields: dict[str, object] = {
        "event_time": MOMENT,
        "server_name": "en.wikipedia.org",
        "type": "edit",
        "namespace": 0,
        "title": "Albert Einstein",
        "user_name": "Alice",
        "bot": False,
        "comment": "typo",
        "revision_old": 100,
        "revision_new": 101,
        "length_old": 50,
        "length_new": 70,
        "log_type": None,
        "log_action": None,
    }
    fields.update(overrides)
    return Change(**fields)  # type: ignore[arg-type]


def figures(**overrides: object) -> DayFigures:
    fields: dict[str, object] = {
        "changes": 1234,
        "edits": 1000,
        "new_pages": 20,
        "log_actions": 100,
        "categorize": 114,
        "other_types": 0,
        "bot_changes": 300,
        "anonymous_changes": 200,
        "human_changes": 734,
        "bytes_added": 5000,
        "bytes_removed": 2000,
        "net_bytes": 3000,
        "distinct_editors": 150,
        "distinct_pages": 800,
        "hourly_changes": tuple([1] * 13 + [99] + [1] * 10),
        "computed_at": datetime(2025, 2, 5, 0, 15, tzinfo=UTC),
    }
    fields.update(overrides)
    return DayFigures(**fields)  # type: ignore[arg-type]


FINAL = DayRollup(DayStatus.FINAL, incomplete=False, computed_at=datetime(2025, 2, 5, 0, 15, tzinfo=UTC))


# --- links ----------------------------------------------------------------------------------------


def test_page_links_use_underscores_and_encode_what_would_break_markdown() -> None:
    assert page_url("en.wikipedia.org", "Albert Einstein") == "https://en.wikipedia.org/wiki/Albert_Einstein"
    assert page_url("en.wikipedia.org", "Foo (bar)") == "https://en.wikipedia.org/wiki/Foo_%28bar%29"
    assert page_url("ko.wikipedia.org", "2005년 한국시리즈") == (
        "https://ko.wikipedia.org/wiki/2005%EB%85%84_%ED%95%9C%EA%B5%AD%EC%8B%9C%EB%A6%AC%EC%A6%88"
    )
    assert (
        page_url("commons.wikimedia.org", "Category:A/B") == "https://commons.wikimedia.org/wiki/Category:A/B"
    )


def test_diff_links_exist_for_edits_and_new_pages_only() -> None:
    assert diff_url(change()) == "https://en.wikipedia.org/w/index.php?diff=101&oldid=100"
    assert diff_url(change(type="new", revision_old=None)) == "https://en.wikipedia.org/w/index.php?oldid=101"
    assert diff_url(change(type="log", revision_old=None, revision_new=None)) is None
    assert diff_url(change(type="categorize")) is None


# --- escaping -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("**bold** _it_ ~~s~~ ||spoiler||", r"\*\*bold\*\* \_it\_ \~\~s\~\~ \|\|spoiler\|\|"),
        ("[click](https://evil.example)", r"\[click\](https://evil.example)"),
        ("`code` > quote # h", r"\`code\` \> quote \# h"),
        ("@everyone @here", "@\u200beveryone @\u200bhere"),
        ("<@123> <@&456> <#789>", "\\<@\u200b123\\> \\<@\u200b&456\\> \\<\\#789\\>"),
        ("line\nbreak\r\x00\u202eend", "line break end"),
        ("back\\slash", r"back\\slash"),
        (None, ""),
    ],
)
def test_escape(text: str | None, escaped: str) -> None:
    assert escape(text) == escaped


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        ("  plain title  ", "plain title"),
        ("Café – “quotes” 日本語", "Café – “quotes” 日本語"),
        ("tab\there", "tab here"),
        ("no-break\u00a0space", "no-break\u00a0space"),
        ("zero\u200bwidth", "zerowidth"),
        ("right\u202eleft", "rightleft"),
        ("line\u2028separator", "line separator"),
        ("\x85next line", "next line"),
    ],
)
def test_clean_puts_text_on_one_line_without_invisible_characters(text: str, cleaned: str) -> None:
    assert clean(text) == cleaned


# --- splitting ------------------------------------------------------------------------------------


def test_split_lines_keeps_lines_whole_and_chunks_within_the_limit() -> None:
    lines = [f"line {i} " + "x" * 90 for i in range(100)]
    chunks = split_lines(lines, MESSAGE_LIMIT)
    assert all(len(chunk) <= MESSAGE_LIMIT for chunk in chunks)
    assert "\n".join(chunks).split("\n") == lines
    assert len(chunks) == 5  # 9,890 characters in all: as few chunks as possible


def test_split_lines_cuts_only_a_line_longer_than_the_limit() -> None:
    assert split_lines(["a" * 5, "b" * 12, "c"], 5) == ["aaaaa", "bbbbb", "bbbbb", "bb\nc"]


def test_pack_respects_the_embed_count_and_total_size_per_message() -> None:
    big = [Embed(description="d" * 4000) for _ in range(3)]
    small = [Embed(description="s") for _ in range(12)]
    messages = pack(["head"], big + small)
    for message in messages:
        assert len(message.embeds) <= EMBEDS_PER_MESSAGE
        assert sum(e.size() for e in message.embeds) <= EMBED_TOTAL_LIMIT
    assert messages[0].content == "head"
    assert sum(len(m.embeds) for m in messages) == 15


# --- !recent --------------------------------------------------------------------------------------


def test_recent_entry_shows_time_title_link_user_comment_and_diff() -> None:
    answer = RecentChanges(EN, (change(),), count=1, include_bots=False, include_categorize=False)
    [message] = discord_reply(answer, prefix="!").messages
    assert message.content == (
        "The 1 newest change on en.wikipedia.org, newest first (bot changes and category changes left out)."
    )
    [embed] = message.embeds
    assert embed.description == (
        "`2021-08-27 13:20:17 UTC` · [Albert Einstein](https://en.wikipedia.org/wiki/Albert_Einstein)"
        " · [Alice](https://en.wikipedia.org/wiki/Special:Contributions/Alice) · +20 · “typo”"
        " · [diff](https://en.wikipedia.org/w/index.php?diff=101&oldid=100)"
    )
    assert plain_text(answer, prefix="!").splitlines()[1] == (
        "2021-08-27 13:20:17 UTC | Albert Einstein | Alice | +20 | typo"
        " | https://en.wikipedia.org/w/index.php?diff=101&oldid=100"
    )


def test_recent_entries_escape_wiki_text_and_never_form_mentions() -> None:
    hostile = change(
        title="*Bold* (x)",
        user_name="@everyone",
        comment="[free nitro](https://evil.example) <@&1> @here\n# big",
    )
    answer = RecentChanges(EN, (hostile,), count=1, include_bots=True, include_categorize=True)
    [message] = discord_reply(answer, prefix="!").messages
    description = message.embeds[0].description or ""
    assert "[\\*Bold\\* (x)](https://en.wikipedia.org/wiki/%2ABold%2A_%28x%29)" in description
    assert "[@\u200beveryone](https://en.wikipedia.org/wiki/Special:Contributions/%40everyone)" in description
    assert "\\[free nitro\\](https://evil.example) \\<@\u200b&1\\> @\u200bhere \\# big" in description
    assert "@everyone" not in description
    assert "@here" not in description
    assert message.content == "The 1 newest change on en.wikipedia.org, newest first."


def test_recent_kinds_of_change_are_labelled() -> None:
    entries = [
        change(type="new", revision_old=None, length_old=None, length_new=300),
        change(type="log", log_type="delete", log_action="delete", revision_old=None, revision_new=None),
        change(type="categorize", bot=True),
    ]
    answer = RecentChanges(EN, tuple(entries), count=3, include_bots=True, include_categorize=True)
    lines = plain_text(answer, prefix="!").splitlines()[1:]
    assert [line.split(" | ")[3] for line in lines] == [
        "+300, new page",
        "log: delete/delete",
        "category, bot",
    ]
    assert lines[0].endswith("https://en.wikipedia.org/w/index.php?oldid=101")
    assert lines[1].endswith("https://en.wikipedia.org/wiki/Albert_Einstein")


def test_recent_says_when_the_count_was_lowered_or_nothing_was_found() -> None:
    lowered = RecentChanges(
        EN, (change(),) * 100, count=100, include_bots=True, include_categorize=True, asked=500
    )
    assert plain_text(lowered, prefix="!").splitlines()[0] == (
        "The 100 newest changes on en.wikipedia.org, newest first. (100 is the most !recent shows.)"
    )
    empty = RecentChanges(EN, (), count=10, include_bots=False, include_categorize=True)
    assert (
        plain_text(empty, prefix="!") == "No changes recorded on en.wikipedia.org yet (bot changes left out)."
    )
    dropped = RecentChanges(
        EN,
        (),
        count=10,
        include_bots=True,
        include_categorize=True,
        newest_day=date(2025, 1, 4),
        retention_days=7,
    )
    assert discord_reply(dropped, prefix="?").summary == (
        "No changes recorded on en.wikipedia.org in the last 7 days, and older ones are not kept. "
        "The newest recorded were on 2025-01-04: ?stats 2025-01-04 en"
    )


def test_recent_with_only_left_out_changes_says_which_word_shows_them() -> None:
    only_categorize = RecentChanges(EN, (), count=5, include_bots=True, include_categorize=False, left_out=1)
    assert plain_text(only_categorize, prefix="?") == (
        "No changes recorded on en.wikipedia.org other than category changes: "
        "1 was left out; ?recent en 5 categorize shows them."
    )
    many = RecentChanges(EN, (), count=10, include_bots=False, include_categorize=False, left_out=1001)
    assert discord_reply(many, prefix="!").summary == (
        "No changes recorded on en.wikipedia.org other than bot changes or category changes: "
        "more than 1,000 were left out; !recent en 10 all shows them."
    )


def test_a_hundred_long_changes_split_within_every_discord_limit() -> None:
    long_one = change(
        title="長" * 120, user_name="U" * 85, comment="c" * 500, length_old=1, length_new=100_000
    )
    answer = RecentChanges(EN, (long_one,) * 100, count=100, include_bots=False, include_categorize=False)
    messages = discord_reply(answer, prefix="!").messages
    assert len(messages) > 1
    entries = 0
    for message in messages:
        assert len(message.content) <= MESSAGE_LIMIT
        assert len(message.embeds) <= EMBEDS_PER_MESSAGE
        assert sum(embed.size() for embed in message.embeds) <= EMBED_TOTAL_LIMIT
        for embed in message.embeds:
            assert len(embed.description or "") <= EMBED_DESCRIPTION_LIMIT
            entries += len((embed.description or "").splitlines())
    assert entries == 100


# --- !stats ---------------------------------------------------------------------------------------


def test_stats_first_line_is_the_original_sentence_then_the_breakdown() -> None:
    answer = DayStats(EN, date(2025, 2, 4), figures(), (TopPage(1, 0, "Main Page", 12),), FINAL)
    [message] = discord_reply(answer, prefix="!").messages
    assert message.content == "On 2025-02-04, there were 1234 changes for language 'en'."
    [embed] = message.embeds
    assert embed.title == "en.wikipedia.org on 2025-02-04"
    fields = {f.name: f.value for f in embed.fields}
    assert fields["Edits"] == "1,000"
    assert fields["New pages"] == "20"
    assert (fields["Bots"], fields["Humans"], fields["Anonymous"]) == ("300", "734", "200")
    assert (fields["Bytes added"], fields["Bytes removed"]) == ("+5,000", "−2,000")
    assert fields["Editors"] == "150"
    assert fields["Busiest hour"] == "13:00–14:00 UTC (99)"
    assert fields["Most edited pages"] == "1. [Main Page](https://en.wikipedia.org/wiki/Main_Page) — 12"
    assert embed.footer == "Final figures, computed 2025-02-05 00:15 UTC"
    text = plain_text(answer, prefix="!")
    assert text.splitlines()[0] == "On 2025-02-04, there were 1234 changes for language 'en'."
    assert "  Busiest hour: 13:00–14:00 UTC (99)" in text.splitlines()
    assert text.splitlines()[-1] == "    1. Main Page — 12"


def test_stats_of_today_say_partial_and_as_of_when() -> None:
    computed = datetime(2025, 2, 4, 13, 25, tzinfo=UTC)
    rollup = DayRollup(DayStatus.PARTIAL, incomplete=False, computed_at=computed)
    answer = DayStats(EN, date(2025, 2, 4), figures(computed_at=computed), (), rollup)
    lines = plain_text(answer, prefix="!").splitlines()
    assert lines[:2] == [
        "On 2025-02-04, there were 1234 changes for language 'en'.",
        "Partial figures: the day is not over or not final yet (as of today 13:25 UTC).",
    ]


def test_stats_of_an_incomplete_day_say_so() -> None:
    rollup = DayRollup(DayStatus.FINAL, incomplete=True, computed_at=FINAL.computed_at)
    answer = DayStats(EN, date(2025, 2, 4), figures(), (), rollup)
    assert plain_text(answer, prefix="!").splitlines()[1] == (
        "Collection was interrupted that day, so these figures are incomplete."
    )


def test_no_stats_distinguishes_not_collected_from_none_seen() -> None:
    day = date(2025, 2, 4)
    not_collected = NoStats(EN, day, Absence.NOT_COLLECTED, None, is_today=False)
    assert plain_text(not_collected, prefix="!") == (
        "No stats found for en on 2025-02-04\nTestON was not collecting changes that day."
    )
    none_seen = NoStats(EN, day, Absence.NONE_SEEN, FINAL, is_today=False)
    assert plain_text(none_seen, prefix="!") == (
        "On 2025-02-04, there were 0 changes for language 'en'.\n"
        "TestON was collecting that day and recorded no changes on en.wikipedia.org."
    )
    interrupted = NoStats(
        EN, day, Absence.NONE_SEEN, DayRollup(DayStatus.FINAL, True, FINAL.computed_at), False
    )
    assert plain_text(interrupted, prefix="!").splitlines()[-1] == (
        "Collection was interrupted that day, so these figures are incomplete."
    )
    today = NoStats(EN, day, Absence.NOT_COLLECTED, None, is_today=True)
    assert plain_text(today, prefix="!").splitlines()[-1] == (
        "That day's changes are not counted yet; figures appear after the next roll-up."
    )


def test_busiest_hour_prefers_the_earliest_of_equals_and_none_for_a_quiet_day() -> None:
    assert busiest_hour([0, 5, 5, 1]) == (1, 5)
    assert busiest_hour([0] * 24) is None
    assert busiest_hour([]) is None


# --- problems, settings, help ---------------------------------------------------------------------


def test_a_problem_is_one_line_with_the_usage_and_escapes_the_echo() -> None:
    answer = Problem("'**2025-02-30**' is not a real day.", Command.STATS)
    reply = discord_reply(answer, prefix="!")
    assert reply.private
    [message] = reply.messages
    assert (
        message.content
        == r"'\*\*2025-02-30\*\*' is not a real day. Usage: !stats <yyyy-mm-dd>|<from>..<to> [lang]"
    )
    assert "\n" not in message.content
    slash = discord_reply(answer, prefix="!", slash=True).messages[0].content
    assert slash.endswith("Usage: /stats date:<yyyy-mm-dd>|<from>..<to> [language]")
    assert (
        plain_text(answer, prefix="!")
        == "'**2025-02-30**' is not a real day. Usage: !stats <yyyy-mm-dd>|<from>..<to> [lang]"
    )


def test_failures_settings_and_help_render() -> None:
    assert plain_text(Failure("Database is away."), prefix="!") == "Database is away."
    assert plain_text(LanguageSet(EN, Scope.GUILD), prefix="!") == (
        "This server's default language is now 'en' (en.wikipedia.org)."
    )
    de = CATALOG.resolve("de")
    defaults = LanguageDefaults(user=None, guild=de, effective=de, in_guild=True)
    assert plain_text(defaults, prefix="!").splitlines()[:2] == [
        "Your commands use language 'de' (de.wikipedia.org): this server's default.",
        "This server's default: 'de'.",
    ]
    help_text = plain_text(Help(None), prefix="?")
    assert "?recent [lang] [n] [bots]" in help_text
    assert "?setLang <code> [guild]" in help_text
    [help_message] = discord_reply(Help(None), prefix="!").messages
    assert help_message.embeds[0].title == "TestON commands"


def test_language_choices_fit_discord_autocomplete_limits() -> None:
    choices = language_choices(CATALOG, "zh-")
    assert choices[:3] == [
        ("zh-yue — Cantonese Wikipedia (zh-yue.wikipedia.org)", "zh-yue"),
        ("zh-min-nan — Chinese (Min Nan) Wikipedia (zh-min-nan.wikipedia.org)", "zh-min-nan"),
        ("zh-classical — Classical Chinese Wikipedia (zh-classical.wikipedia.org)", "zh-classical"),
    ]
    everything = language_choices(CATALOG, "")
    assert len(everything) == 25
    assert all(1 <= len(name) <= 100 and 1 <= len(value) <= 100 for name, value in everything)
    assert language_choices(CATALOG, "x" * 5000) == []
