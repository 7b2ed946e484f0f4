"""What a command's text asks for: pure parsing into typed requests, or a `UsageError` with one usage line.

Text commands keep the original bot's syntax exactly (`!recent`, `!recent 5`, `!recent en`,
`!recent en 20`, `!stats 2025-02-04 en`, `!setLang es`, `!setLang es guild`) and add optional words
(`bots`, `categorize`, `all`). Slash commands arrive as typed options and are checked by the same
functions, so both forms accept and refuse exactly the same things. Each family's words are parsed in a
module of its own (`lookup_arguments`, `report_arguments`, `subscription_arguments`); this one reads the
command's name and hands the rest to its family.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from bot.argument_text import command_named, shown, split_command, tokenize, without_format_characters
from bot.lookup_arguments import parse_help, parse_recent, parse_setlang, parse_stats
from bot.report_arguments import parse_chart, parse_top
from bot.requests import Command, Request, UsageError
from bot.subscription_arguments import (
    parse_digest,
    parse_digests,
    parse_undigest,
    parse_unwatch,
    parse_watch,
    parse_watches,
)


def parse_command(text: str, *, prefix: str, today: date, also: Sequence[str] = ()) -> Request:
    """Parse a whole command line such as `!recent en 20` into its request."""
    name, rest = split_command(without_format_characters(text), prefix, also=also)
    if not name:
        raise UsageError(None, "No command given.")
    command = command_named(name)
    if command is None:
        raise UsageError(None, f"Unknown command {shown(name)}.")
    return parse_arguments(command, rest, today=today)


def parse_arguments(command: Command, arguments: str, *, today: date) -> Request:
    """Parse the text after a command's name."""
    tokens = tokenize(command, arguments)
    if command is Command.RECENT:
        return parse_recent(tokens)
    if command is Command.STATS:
        return parse_stats(tokens, today=today)
    if command is Command.SETLANG:
        return parse_setlang(tokens)
    if command is Command.CHART:
        return parse_chart(tokens, today=today)
    if command is Command.TOP:
        return parse_top(tokens, today=today)
    if command is Command.DIGEST:
        return parse_digest(tokens)
    if command is Command.UNDIGEST:
        return parse_undigest(tokens)
    if command is Command.DIGESTS:
        return parse_digests(tokens)
    if command is Command.WATCH:
        return parse_watch(tokens)
    if command is Command.UNWATCH:
        return parse_unwatch(tokens)
    if command is Command.WATCHES:
        return parse_watches(tokens)
    return parse_help(tokens)
