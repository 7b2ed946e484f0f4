"""Detecting data the stream can no longer replay: pure, no clock and no database.

EventStreams keeps about seven days of history. A consumer that resumes (by `Last-Event-ID` or `?since=`)
after a longer outage is silently served the oldest retained event instead, so the first event after the
resume is far later than where the consumer stopped. The stretch in between is lost for good and the days
it covers must be reported as incomplete.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

# Event times are not monotonic (`meta.dt` goes backwards by seconds, sometimes minutes, in the live
# stream), so only a jump well beyond that jitter is a gap.
DEFAULT_TOLERANCE = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class IngestGap:
    """Events between `gap_from` and `gap_to` (exclusive) were never received."""

    stream: str
    gap_from: datetime
    gap_to: datetime


def detect_gap(
    stream: str,
    resumed_from: datetime | None,
    first_event_time: datetime,
    tolerance: timedelta = DEFAULT_TOLERANCE,
) -> IngestGap | None:
    """The gap between where a resume asked to start and the first event it delivered, if any."""
    if resumed_from is None:
        return None
    if first_event_time - resumed_from <= tolerance:
        return None
    return IngestGap(stream=stream, gap_from=resumed_from, gap_to=first_event_time)
