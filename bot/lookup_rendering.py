"""The lookups' answers in pieces both renderings share: `!recent`'s heading and entries, `!stats`'s sentence,
notes and figures, `!setLang`'s lines. Pure: no network, no database, no discord.py."""

from __future__ import annotations

import functools
from collections.abc import Sequence

from bot.answers import (
    LEFT_OUT_COUNTED,
    Absence,
    Change,
    DayStats,
    LanguageDefaults,
    LanguageSet,
    NoStats,
    RecentChanges,
    TopPage,
)
from bot.links import contributions_url, diff_url, page_url
from bot.markdown import clean, clip, escape, link
from bot.requests import Scope
from bot.text_formats import format_number, format_signed, format_time
from teston.core.statuses import DayStatus
from teston.core.wikis import Wiki

# How much of a wiki's own text one entry shows; titles and user names are at most 255 bytes already.
COMMENT_LIMIT = 200
TITLE_LIMIT = 120


def language_of(wiki: Wiki) -> str:
    """The name a reply gives a wiki in the original bot's sentences: `en`, `en.wiktionary`, `wikidata`."""
    return wiki.label


def stats_sentence(answer: DayStats | NoStats) -> str:
    """The first line of `!stats`, word for word the original bot's when there are figures."""
    day = answer.day.isoformat()
    label = language_of(answer.wiki)
    if isinstance(answer, DayStats):
        return f"On {day}, there were {answer.figures.changes} changes for language '{label}'."
    if answer.absence is Absence.NONE_SEEN:
        return f"On {day}, there were 0 changes for language '{label}'."
    return f"No stats found for {label} on {day}"


def stats_notes(answer: DayStats | NoStats) -> list[str]:
    """What the first line needs qualified: partial or missing data, or why there is none."""
    rollup = answer.rollup
    notes = []
    if isinstance(answer, NoStats):
        if answer.absence is Absence.NOT_ROLLED_UP or (
            answer.is_today and answer.absence is Absence.NOT_COLLECTED
        ):
            notes.append("That day's changes are not counted yet; figures appear after the next roll-up.")
        elif answer.absence is Absence.NOT_COLLECTED:
            notes.append("TestON was not collecting changes that day.")
        else:
            so_far = " so far" if rollup is not None and rollup.status is DayStatus.PARTIAL else ""
            notes.append(
                f"TestON was collecting that day and recorded no changes{so_far} "
                f"on {answer.wiki.server_name}."
            )
    if rollup is not None and rollup.status is DayStatus.PARTIAL:
        computed = rollup.computed_at
        if isinstance(answer, DayStats):
            computed = answer.figures.computed_at
        when = "today" if computed.date() == answer.day else computed.strftime("%Y-%m-%d")
        notes.append(
            f"Partial figures: the day is not over or not final yet (as of {when} {computed:%H:%M} UTC)."
        )
    if rollup is not None and rollup.incomplete:
        notes.append("Collection was interrupted that day, so these figures are incomplete.")
    return notes


def busiest_hour(hourly: Sequence[int]) -> tuple[int, int] | None:
    """The (first) hour with the most changes and its count; None when no hour had any."""
    if not hourly or max(hourly) <= 0:
        return None
    best = max(range(len(hourly)), key=lambda hour: (hourly[hour], -hour))
    return best, hourly[best]


def stats_rows(answer: DayStats) -> list[tuple[str, str]]:
    """The breakdown as (label, value) pairs shared by both renderings."""
    f = answer.figures
    rows = [
        # `edits` counts page creations too (analytics' definition); the next row says how many.
        ("Edits", format_number(f.edits)),
        ("New pages", format_number(f.new_pages)),
        ("Log actions", format_number(f.log_actions)),
        ("Category changes", format_number(f.categorize)),
        ("Bots", format_number(f.bot_changes)),
        ("Humans", format_number(f.human_changes)),
        ("Anonymous", format_number(f.anonymous_changes)),
        ("Bytes added", format_signed(f.bytes_added)),
        ("Bytes removed", format_signed(-abs(f.bytes_removed))),
        ("Net bytes", format_signed(f.net_bytes)),
        ("Editors", format_number(f.distinct_editors)),
        ("Pages changed", format_number(f.distinct_pages)),
    ]
    if f.other_types:
        rows.insert(4, ("Other", format_number(f.other_types)))
    hour = busiest_hour(f.hourly_changes)
    rows.append(
        ("Busiest hour", f"{hour[0]:02d}:00–{(hour[0] + 1) % 24:02d}:00 UTC ({format_number(hour[1])})")
        if hour
        else ("Busiest hour", "none")
    )
    return rows


def change_details(change: Change) -> list[str]:
    """Short facts about one change: size difference, kind, bot."""
    details = []
    if change.length_new is not None and change.type in ("edit", "new"):
        details.append(format_signed(change.length_new - (change.length_old or 0)))
    if change.type == "new":
        details.append("new page")
    elif change.type == "log":
        details.append(f"log: {clean(change.log_type)}/{clean(change.log_action)}")
    elif change.type == "categorize":
        details.append("category")
    elif change.type != "edit":
        details.append(clean(change.type))
    if change.bot:
        details.append("bot")
    return details


def recent_heading(answer: RecentChanges, prefix: str) -> str:
    shown_count = len(answer.changes)
    where = answer.wiki.server_name
    hidden = []
    if not answer.include_bots:
        hidden.append("bot changes")
    if not answer.include_categorize:
        hidden.append("category changes")
    note = f" ({' and '.join(hidden)} left out)" if hidden else ""
    if shown_count == 0:
        if answer.left_out and hidden:
            return left_out_heading(answer, hidden, prefix)
        if answer.newest_day is None:
            return f"No changes recorded on {where} yet{note}."
        # Retention drops raw changes older than RETENTION_DAYS once exported; the daily figures stay.
        day = answer.newest_day.isoformat()
        within = f" in the last {answer.retention_days} days" if answer.retention_days else ""
        return (
            f"No changes recorded on {where}{within}{note}, and older ones are not kept. "
            f"The newest recorded were on {day}: {prefix}stats {day} {language_of(answer.wiki)}"
        )
    noun = "change" if shown_count == 1 else "changes"
    heading = f"The {shown_count} newest {noun} on {where}, newest first{note}."
    if answer.asked is not None:
        heading += f" ({answer.count} is the most {prefix}recent shows.)"
    elif shown_count < answer.count:
        heading += f" (Only {shown_count} recorded.)"
    return heading


def left_out_heading(answer: RecentChanges, hidden: list[str], prefix: str) -> str:
    """No change to show, but the filters left some out: say how many, and the command that shows them."""
    if answer.left_out > LEFT_OUT_COUNTED:
        many = f"more than {format_number(LEFT_OUT_COUNTED)} were"
    else:
        many = f"{format_number(answer.left_out)} {'was' if answer.left_out == 1 else 'were'}"
    # The word that lifts exactly the filters in force: `all` both, else the one that hid something.
    word = "all" if len(hidden) == 2 else "categorize" if answer.include_bots else "bots"
    command = f"{prefix}recent {language_of(answer.wiki)} {answer.count} {word}"
    return (
        f"No changes recorded on {answer.wiki.server_name} other than {' or '.join(hidden)}: "
        f"{many} left out; {command} shows them."
    )


# A change is shown by every `!recent` answer kept while it is among the newest: it is rendered once.
@functools.lru_cache(maxsize=8192)
def recent_entry_markdown(change: Change) -> str:
    title = clip(clean(change.title), TITLE_LIMIT) or "(no title)"
    parts = [f"`{format_time(change.event_time)}`"]
    parts.append(
        link(escape(title), page_url(change.server_name, clean(change.title)))
        if change.title
        else escape(title)
    )
    if change.user_name:
        parts.append(
            link(
                escape(clip(clean(change.user_name), TITLE_LIMIT)),
                contributions_url(change.server_name, clean(change.user_name)),
            )
        )
    details = change_details(change)
    if details:
        parts.append(escape(", ".join(details)))
    comment = clip(clean(change.comment), COMMENT_LIMIT)
    if comment:
        parts.append(f"“{escape(comment)}”")
    diff = diff_url(change)
    if diff:
        parts.append(link("diff", diff))
    return " · ".join(parts)


def recent_entry_plain(change: Change) -> str:
    """`time | title | user | details | comment | link`, one line per change."""
    title = clean(change.title)
    url = diff_url(change) or (page_url(change.server_name, title) if title else "")
    return " | ".join(
        [
            format_time(change.event_time),
            title or "-",
            clean(change.user_name) or "-",
            ", ".join(change_details(change)) or "-",
            clip(clean(change.comment), COMMENT_LIMIT) or "-",
            url or "-",
        ]
    )


def top_page_markdown(server_name: str, page: TopPage) -> str:
    title = clip(clean(page.title), TITLE_LIMIT)
    return f"{page.rank}. {link(escape(title), page_url(server_name, clean(page.title)))} — {page.changes:,}"


def defaults_lines(answer: LanguageDefaults, prefix: str) -> list[str]:
    wiki = answer.effective
    if answer.user is not None:
        source = "your own default"
    elif answer.guild is not None:
        source = "this server's default"
    else:
        source = "TestON's default; none is set"
    lines = [f"Your commands use language '{language_of(wiki)}' ({wiki.server_name}): {source}."]
    if answer.in_guild:
        server = f"'{language_of(answer.guild)}'" if answer.guild else "not set"
        lines.append(f"This server's default: {server}.")
    lines.append(f"Change yours with {prefix}setLang <code>; a server's with {prefix}setLang <code> guild.")
    return lines


def language_set_line(answer: LanguageSet) -> str:
    whose = "Your" if answer.scope is Scope.USER else "This server's"
    wiki = answer.wiki
    return f"{whose} default language is now '{language_of(wiki)}' ({wiki.server_name})."
