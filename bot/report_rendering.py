"""Ranges, charts, top lists and digests rendered as Discord messages or plain text.

Pure, like `bot.rendering` (which hands these answers here): a chart's PNG travels as an `Attachment`
of its message; `teston ask` writes it to a file.
"""

from __future__ import annotations

from typing import assert_never

from bot.answers import (
    Chart,
    Digest,
    DigestList,
    DigestSet,
    DigestsRemoved,
    NoChart,
    RangeStats,
    TopEntries,
    TopEntry,
)
from bot.links import contributions_url, page_url
from bot.markdown import clean, clip, escape, link
from bot.messages import (
    EMBED_FIELDS_LIMIT,
    EMBED_TITLE_LIMIT,
    Attachment,
    Embed,
    EmbedField,
    Message,
    Reply,
    embeds_from_lines,
    pack,
)
from bot.requests import TopList
from bot.text_formats import format_number, format_signed
from teston.core.statuses import DayStatus

ReportAnswer = RangeStats | Chart | NoChart | TopEntries | DigestSet | DigestsRemoved | DigestList
REPORT_ANSWERS = (RangeStats, Chart, NoChart, TopEntries, DigestSet, DigestsRemoved, DigestList)
NAME_LIMIT = 120


# --- ranges ---------------------------------------------------------------------------------------


def range_sentence(answer: RangeStats) -> str:
    days = (answer.last - answer.first).days + 1
    return (
        f"From {answer.first.isoformat()} to {answer.last.isoformat()} ({days} days), there were "
        f"{answer.figures.changes} changes for language '{answer.wiki.label}'."
    )


def range_notes(answer: RangeStats) -> list[str]:
    days = (answer.last - answer.first).days + 1
    notes = []
    if answer.days_counted < days:
        notes.append(
            f"The summaries count {answer.wiki.label} on {answer.days_counted} of the {days} days "
            "(no changes counted, or TestON was not collecting, on the others)."
        )
    if answer.partial_days:
        notes.append(f"{answer.partial_days} of the days have partial figures (not over or not final yet).")
    if answer.incomplete_days:
        notes.append(
            f"Collection was interrupted on {answer.incomplete_days} of the days; figures undercount."
        )
    if not answer.distinct_counted:
        notes.append(
            "Editors and pages over the whole range cannot be counted: they do not add up across days, and "
            f"the raw changes of some of these days are no longer kept (older than {answer.retention_days} "
            "days, or too many to count in time)."
        )
    return notes


def range_rows(answer: RangeStats) -> list[tuple[str, str]]:
    """The summed breakdown, as (label, value) pairs shared by both renderings."""
    f = answer.figures
    rows = [
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
    ]
    if f.other_types:
        rows.insert(4, ("Other", format_number(f.other_types)))
    if answer.distinct_counted:
        rows.append(("Editors (distinct over the range)", format_number(f.distinct_editors)))
        rows.append(("Pages changed (distinct over the range)", format_number(f.distinct_pages)))
    else:
        rows.append(("Editors, pages (distinct)", "not counted, see note"))
    return rows


# --- charts and top lists ---------------------------------------------------------------------------


def chart_caption(answer: Chart) -> str:
    where = ", ".join(wiki.server_name for wiki in answer.wikis)
    if answer.hourly:
        period = f"on {answer.first.isoformat()}, per UTC hour"
    else:
        period = f"from {answer.first.isoformat()} to {answer.last.isoformat()}, per UTC day"
    kinds = (
        ", by editor kind (bots, registered humans, anonymous)"
        if answer.data.stacked and not answer.hourly
        else ""
    )
    return f"Changes on {where} {period}{kinds}: {format_number(answer.data.total())} in all."


def no_chart_line(answer: NoChart) -> str:
    where = ", ".join(wiki.label for wiki in answer.wikis)
    if answer.first == answer.last:
        return f"No figures for {where} on {answer.first.isoformat()}: nothing to chart."
    period = f"from {answer.first.isoformat()} to {answer.last.isoformat()}"
    return f"No figures for {where} {period}: nothing to chart."


def top_heading(answer: TopEntries) -> str:
    what = "most edited pages" if answer.kind is TopList.PAGES else "most active editors"
    where = answer.wiki.server_name
    day = answer.day.isoformat()
    if not answer.entries:
        if answer.rollup is None:
            return f"No top list for {answer.wiki.label} on {day}: that day is not counted (yet)."
        return f"No edits counted on {where} on {day}, so no {what}."
    partial = (
        " (partial: the day is not over or not final yet)"
        if answer.rollup and answer.rollup.status is DayStatus.PARTIAL
        else ""
    )
    return f"The {len(answer.entries)} {what} on {where} on {day} (UTC){partial}, by number of edits."


def top_entry_markdown(answer: TopEntries, entry: TopEntry) -> str:
    name = clip(clean(entry.name), NAME_LIMIT)
    if answer.kind is TopList.PAGES:
        target = page_url(answer.wiki.server_name, clean(entry.name))
    else:
        target = contributions_url(answer.wiki.server_name, clean(entry.name))
    bot = " (bot)" if entry.bot else ""
    return f"{entry.rank}. {link(escape(name), target)}{bot} — {format_number(entry.changes)}"


def top_entry_plain(entry: TopEntry) -> str:
    bot = " (bot)" if entry.bot else ""
    return f"{entry.rank}. {clean(entry.name)}{bot} — {format_number(entry.changes)}"


# --- digests ----------------------------------------------------------------------------------------


def digest_line(digest: Digest, *, markdown: bool) -> str:
    label = digest.wiki.label if digest.wiki else digest.dbname
    channel = f"<#{digest.channel_id}>" if markdown else f"channel {digest.channel_id}"
    last = f", last posted for {digest.last_day.isoformat()}" if digest.last_day else ", not posted yet"
    paused = ""
    if digest.paused_reason is not None:
        since = f" since {digest.paused_at:%Y-%m-%d %H:%M} UTC" if digest.paused_at else ""
        paused = f"; paused{since}: {digest.paused_reason}"
    return f"#{digest.id}: '{label}' in {channel} daily at {digest.at:%H:%M} UTC{last}{paused}"


def digest_lines(
    answer: DigestSet | DigestsRemoved | DigestList, prefix: str, *, markdown: bool
) -> list[str]:
    if isinstance(answer, DigestSet):
        digest = answer.digest
        label = digest.wiki.label if digest.wiki else digest.dbname
        verb = "will post" if answer.created else "now posts"
        return [
            f"Digest #{digest.id}: this channel {verb} yesterday's figures and chart for '{label}' "
            f"every day at {digest.at:%H:%M} UTC. Stop it with {prefix}undigest {digest.id}."
        ]
    if isinstance(answer, DigestsRemoved):
        return [f"Stopped digest {digest_line(d, markdown=markdown)}." for d in answer.digests]
    if not answer.digests:
        return [f"No daily digests here. Start one with {prefix}digest <lang> [HH:MM]."]
    return ["Daily digests:", *(digest_line(d, markdown=markdown) for d in answer.digests)]


# --- both renderings --------------------------------------------------------------------------------


def report_reply(answer: ReportAnswer, *, prefix: str, slash: bool) -> Reply:
    """A report answer as Discord messages."""
    if isinstance(answer, RangeStats):
        first = range_sentence(answer)
        embed = Embed(
            title=clip(
                f"{answer.wiki.server_name}, {answer.first.isoformat()} to {answer.last.isoformat()}",
                EMBED_TITLE_LIMIT,
            ),
            url=f"https://{answer.wiki.server_name}/",
            fields=tuple(EmbedField(label, value, inline=True) for label, value in range_rows(answer))[
                :EMBED_FIELDS_LIMIT
            ],
            footer="Sums of the daily figures (UTC days)",
        )
        return Reply(pack([first, *range_notes(answer)], [embed]), summary=first)
    if isinstance(answer, Chart):
        caption = chart_caption(answer)
        message = Message(content=caption, attachments=(Attachment(answer.filename, answer.png),))
        return Reply((message,), summary=caption)
    if isinstance(answer, NoChart):
        line = no_chart_line(answer)
        return Reply((Message(content=line),), summary=line)
    if isinstance(answer, TopEntries):
        heading = top_heading(answer)
        lines = [top_entry_markdown(answer, entry) for entry in answer.entries]
        return Reply(pack([heading], embeds_from_lines(lines) if lines else []), summary=heading)
    if isinstance(answer, DigestSet | DigestsRemoved | DigestList):
        lines = digest_lines(answer, prefix, markdown=True)
        return Reply(pack(lines), private=slash and isinstance(answer, DigestList), summary=lines[0])
    assert_never(answer)


def report_text(answer: ReportAnswer, *, prefix: str) -> str:
    """A report answer as plain text; a chart's PNG is not text (see `attachments_of`)."""
    if isinstance(answer, RangeStats):
        lines = [range_sentence(answer), *range_notes(answer)]
        lines.append(f"{answer.wiki.server_name}, {answer.first.isoformat()} to {answer.last.isoformat()}:")
        lines.extend(f"  {label}: {value}" for label, value in range_rows(answer))
        return "\n".join(lines)
    if isinstance(answer, Chart):
        return chart_caption(answer)
    if isinstance(answer, NoChart):
        return no_chart_line(answer)
    if isinstance(answer, TopEntries):
        return "\n".join([top_heading(answer), *map(top_entry_plain, answer.entries)])
    if isinstance(answer, DigestSet | DigestsRemoved | DigestList):
        return "\n".join(digest_lines(answer, prefix, markdown=False))
    assert_never(answer)


def attachments_of(reply: Reply) -> list[Attachment]:
    """Every file of a reply, in order."""
    return [attachment for message in reply.messages for attachment in message.attachments]
