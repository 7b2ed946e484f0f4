"""When a channel may get its next feed post: Discord's limit of a few messages per window, kept ahead.

Pure. Discord lets a bot create 5 messages per 5 seconds in one channel and answers the next with 429
(https://discord.com/developers/docs/topics/rate-limits). `ChannelPace` keeps the times of each
channel's last posts and says how long to wait so that no window of `per` seconds ever holds more than
`limit` of them: a quiet channel's post goes out at once, and a busy channel settles at `limit` posts
per `per` seconds, each carrying what arrived meanwhile. `min_interval` adds a floor between two posts.
The window counts the times Discord answered, never earlier than Discord counted the request; the floor
counts from when each post was sent: discord.py returns from the post that empties Discord's bucket only
once the bucket has reset, and a floor counted from then would add a second to every fifth post.
"""

from __future__ import annotations

from collections import deque

# Discord's limit on posting in one channel: 5 messages per 5 seconds.
DISCORD_CHANNEL_LIMIT = 5
DISCORD_CHANNEL_WINDOW = 5.0


class ChannelPace:
    def __init__(
        self,
        *,
        limit: int = DISCORD_CHANNEL_LIMIT,
        per: float = DISCORD_CHANNEL_WINDOW,
        min_interval: float = 0.0,
    ) -> None:
        if limit < 1:
            raise ValueError("a channel must allow at least one post per window")
        self.limit = limit
        self.per = per
        self.min_interval = min_interval
        self._sent: dict[int, deque[float]] = {}
        self._started: dict[int, float] = {}

    def delay(self, channel_id: int, now: float) -> float:
        """Seconds to wait from `now` before posting in the channel (0: at once)."""
        sent = self._sent.get(channel_id)
        if not sent:
            return 0.0
        wait = self._started[channel_id] + self.min_interval - now
        if len(sent) >= self.limit:
            # The post `limit` back must have left the window.
            wait = max(wait, sent[0] + self.per - now)
        return max(0.0, wait)

    def record(self, channel_id: int, at: float, *, started: float | None = None) -> None:
        """A post in the channel, sent at `started` (when known), was answered at `at`."""
        sent = self._sent.get(channel_id)
        if sent is None:
            sent = self._sent[channel_id] = deque(maxlen=self.limit)
        sent.append(at)
        self._started[channel_id] = at if started is None else started
