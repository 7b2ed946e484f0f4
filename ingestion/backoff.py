"""When to reconnect to the event stream: a pure schedule of delays and a classification of failures.

Nothing here sleeps or touches the network; the client asks `ReconnectPolicy.delay()` how long to wait.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass


class Failure(enum.Enum):
    """Why a connection ended, as far as reconnecting is concerned."""

    # The connection dropped, timed out, or the server closed a healthy stream: retry soon.
    DISCONNECTED = "disconnected"
    # 429: the server asks us to slow down (Wikimedia limits concurrent connections per client).
    THROTTLED = "throttled"
    # 5xx and 408: the server is unwell; back off exponentially.
    SERVER_ERROR = "server_error"
    # Any other 4xx (403 for a User-Agent the policy refuses, 404 for a wrong URL): retrying soon will not
    # help, but an ingester must outlive a misconfigured proxy, so it retries at the slowest pace.
    REFUSED = "refused"


def classify_status(status: int) -> Failure | None:
    """The failure an HTTP status means, or None when the response is a stream to read (2xx)."""
    if 200 <= status < 300:
        return None
    if status == 429:
        return Failure.THROTTLED
    if status >= 500 or status == 408:
        return Failure.SERVER_ERROR
    return Failure.REFUSED


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header given as delta-seconds; None for absent or HTTP-date forms."""
    # RFC 9110 §10.2.3 also allows an HTTP-date; EventStreams' front end sends seconds, and falling back to
    # our own schedule for a date is safe.
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """Exponential backoff with jitter, starting from the server's `retry:` when it sent one."""

    initial: float = 1.0
    maximum: float = 60.0
    multiplier: float = 2.0
    # Each delay is drawn from [(1 - jitter) * d, d] so that clients dropped together do not return together.
    jitter: float = 0.5

    def delay(
        self,
        attempt: int,
        failure: Failure,
        *,
        retry_ms: int | None = None,
        retry_after: float | None = None,
        rng: random.Random,
    ) -> float:
        """Seconds to wait before reconnect number `attempt` (1 for the first after a failure)."""
        if failure is Failure.REFUSED:
            return self.maximum
        # Per the SSE spec a `retry:` field sets the reconnection time; it is our base, not a fixed delay,
        # so repeated failures still back off.
        base = retry_ms / 1000 if retry_ms is not None else self.initial
        if failure is Failure.DISCONNECTED and attempt <= 1:
            # A stream that ran and then dropped is the normal case (EventStreams closes connections
            # after ~15 minutes): come back after the base time, without exponential growth.
            nominal = base
        else:
            nominal = base * self.multiplier ** max(attempt - 1, 0)
        nominal = min(nominal, self.maximum)
        delay = nominal * (1 - self.jitter * rng.random())
        if retry_after is not None:
            # The server's explicit wish for a 429/503 is a floor, never shortened by jitter.
            delay = max(delay, min(retry_after, self.maximum))
        return delay
