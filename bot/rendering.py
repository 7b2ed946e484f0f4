"""Answers rendered as Discord messages (`bot.messages`) or as plain text for a terminal.

The lookups' pieces are in `lookup_rendering`, the reports' in `report_rendering`, the feeds' in
`bot.feeds.replies`; this module picks the one for each answer, and holds the usage and help lines.

Pure: no network, no database, no discord.py. Times are shown in UTC as `YYYY-MM-DD HH:MM:SS UTC`
everywhere, so a reply reads the same in Discord, on a terminal and in a test.

Everything that came from users or wikis (titles, user names, comments, echoed arguments) is escaped
before it reaches Discord markdown, and `@` never forms a mention; the Discord shell additionally sends
every message with no mentions allowed.
"""

from __future__ import annotations

from typing import Protocol, assert_never

from bot.answers import (
    TOP_PAGES_SHOWN,
    Answer,
    DayStats,
    Failure,
    Help,
    LanguageDefaults,
    LanguageSet,
    NoStats,
    Problem,
    RecentChanges,
)
from bot.feeds.answers import FeedCreated, FeedList, FeedRemoved
from bot.feeds.replies import feed_plain, feed_reply
from bot.lookup_rendering import (
    defaults_lines,
    language_set_line,
    recent_entry_markdown,
    recent_entry_plain,
    recent_heading,
    stats_notes,
    stats_rows,
    stats_sentence,
    top_page_markdown,
)
from bot.markdown import clean, clip, escape
from bot.messages import (
    EMBED_DESCRIPTION_LIMIT,
    EMBED_FIELD_VALUE_LIMIT,
    EMBED_FIELDS_LIMIT,
    EMBED_TITLE_LIMIT,
    MESSAGE_LIMIT,
    Embed,
    EmbedField,
    Message,
    Reply,
    embeds_from_lines,
    pack,
    split_lines,
)
from bot.report_rendering import REPORT_ANSWERS, report_reply, report_text
from bot.requests import PREFIX_USAGE, SLASH_USAGE, SUMMARIES, Command
from teston.core.statuses import DayStatus
from teston.core.wikis import Wiki

# --- autocomplete ---------------------------------------------------------------------------------

# Discord's limits for one autocomplete choice: 25 choices, names and values of 1 to 100 characters.
CHOICES_LIMIT = 25
CHOICE_TEXT_LIMIT = 100


class WikiSearch(Protocol):
    def search(self, prefix: str, limit: int = ...) -> list[Wiki]: ...


def language_choices(catalog: WikiSearch, current: str) -> list[tuple[str, str]]:
    """Autocomplete choices for a language option: (shown name, value typed into the command)."""
    return [
        (
            clip(f"{wiki.label} — {wiki.name} ({wiki.server_name})", CHOICE_TEXT_LIMIT),
            wiki.label[:CHOICE_TEXT_LIMIT],
        )
        for wiki in catalog.search(current[:CHOICE_TEXT_LIMIT], CHOICES_LIMIT)
        if wiki.label
    ]


# --- usage and help lines -------------------------------------------------------------------------


def usage_line(command: Command | None, prefix: str, *, slash: bool = False) -> str:
    if command is None:
        names = ", ".join(f"{prefix}{'setLang' if c is Command.SETLANG else c.value}" for c in Command)
        return f"Commands: {names}."
    usage = SLASH_USAGE[command] if slash else PREFIX_USAGE[command].format(p=prefix)
    return f"Usage: {usage}"


def help_lines(command: Command | None, prefix: str, *, markdown: bool) -> list[str]:
    commands = [command] if command else list(Command)
    lines = []
    for each in commands:
        usage = PREFIX_USAGE[each].format(p=prefix)
        lines.append(f"`{usage}` — {SUMMARIES[each]}" if markdown else f"{usage} — {SUMMARIES[each]}")
    if command is None:
        lines.append(
            "Slash commands: /recent, /stats, /setlang, /chart, /top, /digest, /undigest, /digests, /help, "
            "/watch, /unwatch, /watches "
            "(with language autocomplete). "
            "Languages are wiki codes such as en, de, zh-hans, en.wiktionary, wikidata, commons; "
            "days are UTC."
        )
        lines.append("Default language: yours (setLang), else the server's, else en.")
    return lines if markdown else [line.replace("`", "") for line in lines]


# --- the answers --------------------------------------------------------------------------------


def discord_reply(answer: Answer, *, prefix: str, slash: bool = False) -> Reply:
    """The answer as Discord messages within the platform's limits.

    Only text from users and wikis is escaped; TestON's own sentences and the catalog's wiki names and
    hosts are trusted and sent as they are, so they read the same as on a terminal.
    """
    if isinstance(answer, Problem):
        line = f"{escape(answer.problem)} {usage_line(answer.command, prefix, slash=slash)}"
        return Reply((Message(content=clip(line, MESSAGE_LIMIT)),), private=True, summary=answer.problem)
    if isinstance(answer, Failure):
        return Reply((Message(content=answer.message),), private=True, summary=answer.message)
    if isinstance(answer, REPORT_ANSWERS):
        return report_reply(answer, prefix=prefix, slash=slash)
    if isinstance(answer, RecentChanges):
        heading = recent_heading(answer, prefix)
        lines = [recent_entry_markdown(change) for change in answer.changes]
        embeds = embeds_from_lines(
            lines,
            title=f"Recent changes on {answer.wiki.server_name}",
            url=f"https://{answer.wiki.server_name}/wiki/Special:RecentChanges",
        )
        return Reply(pack([heading], embeds), summary=heading)
    if isinstance(answer, DayStats):
        first = stats_sentence(answer)
        wiki = answer.wiki
        fields = [EmbedField(label, value, inline=True) for label, value in stats_rows(answer)]
        if answer.top_pages:
            top = split_lines(
                [top_page_markdown(wiki.server_name, page) for page in answer.top_pages[:TOP_PAGES_SHOWN]],
                EMBED_FIELD_VALUE_LIMIT,
            )[0]
            fields.append(EmbedField("Most edited pages", top))
        status = answer.rollup.status if answer.rollup else DayStatus.FINAL
        footer = (
            f"{status.value.capitalize()} figures, computed {answer.figures.computed_at:%Y-%m-%d %H:%M} UTC"
        )
        embed = Embed(
            title=clip(f"{wiki.server_name} on {answer.day.isoformat()}", EMBED_TITLE_LIMIT),
            url=f"https://{wiki.server_name}/",
            fields=tuple(fields[:EMBED_FIELDS_LIMIT]),
            footer=footer,
        )
        return Reply(pack([first, *stats_notes(answer)], [embed]), summary=first)
    if isinstance(answer, NoStats):
        first = stats_sentence(answer)
        return Reply(pack([first, *stats_notes(answer)]), summary=first)
    if isinstance(answer, LanguageSet):
        line = language_set_line(answer)
        return Reply((Message(content=line),), private=slash, summary=line)
    if isinstance(answer, LanguageDefaults):
        lines = defaults_lines(answer, prefix)
        return Reply(pack(lines), private=slash, summary=lines[0])
    if isinstance(answer, FeedCreated | FeedRemoved | FeedList):
        return feed_reply(answer, prefix=prefix)
    if not isinstance(answer, Help):
        assert_never(answer)
    lines = help_lines(answer.command, prefix, markdown=True)
    embed = Embed(title="TestON commands", description=split_lines(lines, EMBED_DESCRIPTION_LIMIT)[0])
    return Reply(pack([], [embed]), private=slash, summary="help")


def plain_text(answer: Answer, *, prefix: str) -> str:
    """The answer as plain text for a terminal: no markdown, no escaping, one item per line."""
    if isinstance(answer, Problem):
        return f"{answer.problem} {usage_line(answer.command, prefix)}"
    if isinstance(answer, Failure):
        return answer.message
    if isinstance(answer, REPORT_ANSWERS):
        return report_text(answer, prefix=prefix)
    if isinstance(answer, RecentChanges):
        return "\n".join([recent_heading(answer, prefix), *map(recent_entry_plain, answer.changes)])
    if isinstance(answer, DayStats):
        lines = [stats_sentence(answer), *stats_notes(answer)]
        lines.append(f"{answer.wiki.server_name} on {answer.day.isoformat()}:")
        lines.extend(f"  {label}: {value}" for label, value in stats_rows(answer))
        if answer.top_pages:
            lines.append("  Most edited pages:")
            lines.extend(
                f"    {page.rank}. {clean(page.title)} — {page.changes:,}"
                for page in answer.top_pages[:TOP_PAGES_SHOWN]
            )
        return "\n".join(lines)
    if isinstance(answer, NoStats):
        return "\n".join([stats_sentence(answer), *stats_notes(answer)])
    if isinstance(answer, LanguageSet):
        return language_set_line(answer)
    if isinstance(answer, LanguageDefaults):
        return "\n".join(defaults_lines(answer, prefix))
    if isinstance(answer, FeedCreated | FeedRemoved | FeedList):
        return feed_plain(answer, prefix=prefix)
    if not isinstance(answer, Help):
        assert_never(answer)
    return "\n".join(help_lines(answer.command, prefix, markdown=False))
