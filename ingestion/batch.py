"""The records the pipeline and its committers exchange: a batch to commit, its outcome, a stream's cursor."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from ingestion.copy_rows import CopyRows
from ingestion.gaps import IngestGap


@dataclass(frozen=True, slots=True)
class StreamCursor:
    """Where a stream was last committed: its `Last-Event-ID` (or file position) and newest event time."""

    stream: str
    position: str
    last_event_time: datetime | None


@dataclass(frozen=True, slots=True)
class QuarantinedEvent:
    """A payload refused by the parser or the database, with where it came from and why."""

    source: str
    reason: str
    payload: str


@dataclass(frozen=True, slots=True)
class Batch:
    """Everything one transaction commits; `position` is the cursor after the batch's last event.

    `rows` are row tuples in `INGEST_COLUMNS` order, or already encoded (the pipeline encodes as it parses).
    """

    stream: str
    rows: Sequence[Sequence[Any]] | CopyRows
    quarantined: Sequence[QuarantinedEvent] = ()
    position: str | None = None
    last_event_time: datetime | None = None
    gaps: Sequence[IngestGap] = ()


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What committing one batch did."""

    inserted: int  # rows newly stored
    duplicates: int  # rows dropped: a copy earlier in the batch, or the event already stored
    # Records newly added to `rejected_events`: the batch's `quarantined` and its quarantined rows, less
    # those already there (the same origin, reason and payload, as a resume or a second replay sends).
    new_quarantine_records: int
    seconds: float
    # Rows of `Batch.rows` quarantined instead of stored: the database refused them, or their values do not
    # fit their columns.
    quarantined_rows: int = 0
    days: frozenset[date] = field(default_factory=frozenset)
