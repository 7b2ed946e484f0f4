"""What writers tell readers through PostgreSQL's NOTIFY, and how a notice's payload is spelled.

- `recent_changes`: a transaction stored changes (the ingester, each commit) or removed some (retention).
  The payload names the wikis (database names, comma-separated); empty means any wiki may have changed.
- `day_rollups`: a day's summary rows were replaced or removed. The payload is the day (ISO); empty means
  any day.

A notification is delivered only if its transaction commits, after the commit is visible.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

CHANGES_CHANNEL = "recent_changes"
ROLLUPS_CHANNEL = "day_rollups"
# PostgreSQL refuses payloads of 8000 bytes or more; a commit touching wikis whose names do not fit says
# "any wiki" instead.
MAX_PAYLOAD = 7_900


def wikis_payload(wikis: Iterable[str]) -> str:
    """The payload naming `wikis` (sorted), or the empty one (any wiki) when they do not fit."""
    payload = ",".join(sorted(set(wikis)))
    return payload if len(payload.encode()) <= MAX_PAYLOAD else ""


def wikis_named(payload: str) -> frozenset[str] | None:
    """The wikis a `recent_changes` payload names; None for any wiki."""
    return frozenset(payload.split(",")) if payload else None


def day_payload(day: date) -> str:
    return day.isoformat()


def day_named(payload: str) -> date | None:
    """The day a `day_rollups` payload names; None for any day (or a payload that is not a day)."""
    try:
        return date.fromisoformat(payload) if payload else None
    except ValueError:
        return None
