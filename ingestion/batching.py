"""Filling a batch: deliveries parsed into rows encoded for COPY, quarantine records, canaries and gaps.

`BatchBuilder` is the pipeline's parsing half: it turns a delivery's payloads into a `PendingBatch` and a
full or due one into the `Batch` a committer stores. When and how much to parse is the pipeline's.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ingestion.batch import Batch, QuarantinedEvent
from ingestion.copy_rows import CopyRows
from ingestion.events import Rejection, parse_event
from ingestion.gaps import IngestGap, detect_gap
from ingestion.sources import Delivery, Source
from teston.core.wikis import WikiCatalog

log = logging.getLogger(__name__)


@dataclass(slots=True)
class PendingBatch:
    """The batch being filled: its rows, quarantine records, canaries, gaps and cursor position."""

    rows: CopyRows = field(default_factory=CopyRows)
    quarantined: list[QuarantinedEvent] = field(default_factory=list)
    canary: int = 0
    gaps: list[IngestGap] = field(default_factory=list)
    position: str | None = None
    started: float = 0.0
    # For the metrics only: (wiki, type) and event time of each row, copies included.
    kinds: Counter[tuple[str, str]] = field(default_factory=Counter)
    event_times: list[datetime] = field(default_factory=list)

    @property
    def size(self) -> int:
        return self.rows.received + len(self.quarantined) + self.canary

    @property
    def empty(self) -> bool:
        return self.position is None and self.size == 0


@dataclass(frozen=True, slots=True)
class SealedBatch:
    """A batch handed to the committer, with what the metrics count once it is committed."""

    batch: Batch
    canary: int
    kinds: Counter[tuple[str, str]]
    event_times: list[datetime]


class BatchBuilder:
    """Parses deliveries of one source into pending batches, and seals them for the committer."""

    def __init__(
        self,
        source: Source,
        catalog: WikiCatalog,
        *,
        gap_tolerance: timedelta,
        newest: datetime | None,
        count_kinds: bool,
    ) -> None:
        self._source = source
        self._catalog = catalog
        self._gap_tolerance = gap_tolerance
        self._newest = newest  # newest event time seen, the reference for gaps
        self._count_kinds = count_kinds  # collect (wiki, type) and event times for the metrics
        self._check_gap = False

    def parse_into(self, pending: PendingBatch, delivery: Delivery, start: int, end: int) -> None:
        """Parse payloads `start` to `end` of the delivery into the pending batch."""
        if delivery.resumed and start == 0:
            self._check_gap = True
        catalog = self._catalog
        append = pending.rows.append
        metrics = self._count_kinds
        lags = metrics and self._source.live
        for index in range(start, end):
            payload = delivery.payloads[index]
            if not payload or payload.isspace():
                continue  # a blank line in a JSON Lines file is not an event
            result = parse_event(payload, catalog)
            if isinstance(result, tuple):  # ChangeRow, a NamedTuple
                append(result)
                if metrics:
                    pending.kinds[result.wiki, result.type] += 1
                    if lags:
                        pending.event_times.append(result.event_time)
                if self._check_gap:
                    self._check_gap = False
                    self._record_gap(pending, result.event_time)
            elif isinstance(result, Rejection):
                origin = self._source.origin(delivery.first_record + index)
                pending.quarantined.append(QuarantinedEvent(origin, result.reason, result.payload))
            else:
                pending.canary += 1
        if end == len(delivery.payloads) and delivery.position is not None:
            pending.position = delivery.position

    def _record_gap(self, pending: PendingBatch, first_event_time: datetime) -> None:
        gap = detect_gap(self._source.stream, self._newest, first_event_time, self._gap_tolerance)
        if gap is not None:
            log.warning(
                "events from %s to %s are beyond the stream's retention and were lost",
                gap.gap_from.isoformat(),
                gap.gap_to.isoformat(),
            )
            pending.gaps.append(gap)

    def seal(self, pending: PendingBatch) -> SealedBatch:
        """The pending batch as the committer takes it; its newest event time becomes the gap reference."""
        newest = max(pending.rows.times) if pending.rows.times else None
        if newest is not None and (self._newest is None or newest > self._newest):
            self._newest = newest
        batch = Batch(
            stream=self._source.stream,
            rows=pending.rows,
            quarantined=pending.quarantined,
            position=pending.position,
            last_event_time=newest,
            gaps=pending.gaps,
        )
        return SealedBatch(batch, pending.canary, pending.kinds, pending.event_times)
