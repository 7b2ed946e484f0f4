"""Discord's per-channel limit on creating messages, enforced: a window of `limit` posts per `per` seconds.

Discord answers every message post with its bucket's state in `X-RateLimit-*` headers (limit,
remaining, when the window resets) and a post beyond the limit with 429 and the seconds to wait
(`retry_after`), see https://discord.com/developers/docs/topics/rate-limits. A window opens with the
first post after the last one ended, as Discord's buckets do. The fake also counts what a client did
with the answers: every 429, and every post that came back before an earlier 429's `retry_after` had
passed (a 429 ignored).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

# Discord's limit on posting in one channel: 5 messages per 5 seconds.
DISCORD_CHANNEL_LIMIT = (5, 5.0)


@dataclass
class _Window:
    ends: float
    used: int = 0
    # When the channel may be posted in again according to the last 429 (0: no 429 pending).
    retry_at: float = 0.0


@dataclass(frozen=True)
class Verdict:
    """A post's answer from the limiter: accepted or not, the 429's `retry_after`, and the headers."""

    allowed: bool
    retry_after: float
    headers: dict[str, str]


@dataclass
class ChannelRateLimits:
    limit: int
    per: float
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time
    # 429s answered, and posts that arrived before the `retry_after` of the channel's last 429.
    limited: int = 0
    ignored: int = 0
    # The longest a client waited past a 429's retry_after before trying again (seconds).
    retries: list[float] = field(default_factory=list)
    _windows: dict[int, _Window] = field(default_factory=dict)

    def check(self, channel_id: int) -> Verdict:
        """Count one post in `channel_id` now; whether Discord accepts it, and its rate-limit headers."""
        now = self.clock()
        window = self._windows.get(channel_id)
        if window is not None and window.retry_at:
            if now < window.retry_at - 0.001:
                self.ignored += 1
            else:
                self.retries.append(now - window.retry_at)
            window.retry_at = 0.0
        if window is None or now >= window.ends:
            window = self._windows[channel_id] = _Window(ends=now + self.per, retry_at=0.0)
        reset_after = window.ends - now
        if window.used >= self.limit:
            self.limited += 1
            window.retry_at = window.ends
            return Verdict(False, reset_after, self._headers(channel_id, 0, reset_after))
        window.used += 1
        return Verdict(True, 0.0, self._headers(channel_id, self.limit - window.used, reset_after))

    def _headers(self, channel_id: int, remaining: int, reset_after: float) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": f"{self.wall_clock() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{math.ceil(reset_after * 1000) / 1000:.3f}",
            "X-RateLimit-Bucket": f"channel-messages-{channel_id}",
        }
