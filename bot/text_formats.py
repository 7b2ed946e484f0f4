"""How replies write numbers, signed byte counts and times, the same in Discord and on a terminal."""

from __future__ import annotations

from datetime import datetime


def format_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def format_number(value: int) -> str:
    return f"{value:,}"


def format_signed(value: int) -> str:
    return f"+{value:,}" if value > 0 else f"{value:,}".replace("-", "−") if value < 0 else "0"
