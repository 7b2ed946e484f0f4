"""The replies of `!watch`, `!unwatch` and `!watches`, for Discord and for a terminal. Pure."""

from __future__ import annotations

from bot.feeds.answers import FeedAnswer, FeedCreated, FeedRemoved, FeedRow
from bot.feeds.filters import parse_filter_words
from bot.markdown import escape
from bot.messages import Message, Reply, pack


def filters_text(feed: FeedRow) -> str:
    """The feed's filters as typed, with the defaults spelled out when none were given."""
    words = parse_filter_words(feed.filters).words()
    return words or "default: edits, new pages and log entries by humans"


def state_text(feed: FeedRow) -> str:
    if feed.paused_reason is not None:
        since = f" since {feed.paused_at:%Y-%m-%d %H:%M} UTC" if feed.paused_at else ""
        return f"paused{since}: {feed.paused_reason}"
    posted = f"{feed.posted:,} posted"
    if feed.skipped:
        posted += f", {feed.skipped:,} skipped"
    last = f", last at {feed.last_posted_at:%Y-%m-%d %H:%M} UTC" if feed.last_posted_at else ""
    return f"live ({posted}{last})"


def feed_line(feed: FeedRow, server_name: str, *, markdown: bool) -> str:
    channel = f"<#{feed.channel_id}>" if markdown else f"channel {feed.channel_id}"
    filters = filters_text(feed)
    if markdown:
        filters = escape(filters)
    return f"#{feed.id} · {server_name} → {channel} · {filters} · {state_text(feed)}"


def feed_lines(answer: FeedAnswer, prefix: str, *, markdown: bool) -> list[str]:
    if isinstance(answer, FeedCreated):
        feed = answer.feed
        filters = escape(filters_text(feed)) if markdown else filters_text(feed)
        return [
            f"Feed #{feed.id}: changes on {answer.wiki.server_name} will be posted in this channel as they "
            f"happen ({filters}). Stop it with {prefix}unwatch {feed.id}."
        ]
    if isinstance(answer, FeedRemoved):
        return [f"Feed #{answer.feed.id} removed; nothing more will be posted for it."]
    if not answer.feeds:
        return [f"This server has no feeds. Start one with {prefix}watch <lang> [filters…]."]
    lines = [f"This server's feeds ({len(answer.feeds)}):"]
    for feed in answer.feeds:
        wiki = answer.wikis.get(feed.wiki)
        lines.append(feed_line(feed, wiki.server_name if wiki else feed.wiki, markdown=markdown))
    return lines


def feed_reply(answer: FeedAnswer, *, prefix: str) -> Reply:
    lines = feed_lines(answer, prefix, markdown=True)
    messages = pack(lines) if len(lines) > 1 else (Message(content=lines[0]),)
    return Reply(messages, summary=lines[0])


def feed_plain(answer: FeedAnswer, *, prefix: str) -> str:
    return "\n".join(feed_lines(answer, prefix, markdown=False))
