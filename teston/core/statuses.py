"""The status words stored in the database and read by more than one package, each defined once.

Part of the shared base: it imports no feature package, so analytics (which writes these values) and
the bot (which reads them) agree on them through this module. Being `StrEnum`s, the members are the
stored text itself and pass to psycopg as query parameters unchanged.
"""

from __future__ import annotations

from enum import StrEnum


class DayStatus(StrEnum):
    """A day's roll-up (`day_rollups.status`): still open and refreshed, or closed, exported and verified."""

    PARTIAL = "partial"
    FINAL = "final"


class JobStatus(StrEnum):
    """The outcome of an analytics run (`job_runs.status`); `running` until it finishes."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    RUNNING = "running"
