"""Which bot process serves which Discord guild when several processes split the gateway's shards.

Discord puts a guild on shard `(guild_id >> 22) % shard_count` and direct messages on shard 0
(https://discord.com/developers/docs/events/gateway#sharding). A process runs the shards in `SHARD_IDS`,
so it receives only those guilds' commands; the work it starts on its own (daily digests, live feeds)
must be limited the same way, or two processes would post the same guild's messages.
"""

from __future__ import annotations

from dataclasses import dataclass


def shard_of(guild_id: int | None, shard_count: int) -> int:
    """The shard Discord delivers `guild_id`'s events on (direct messages, `None`: shard 0)."""
    if shard_count < 1:
        raise ValueError(f"shard_count must be at least 1, got {shard_count}")
    return 0 if guild_id is None else (guild_id >> 22) % shard_count


@dataclass(frozen=True, slots=True)
class ShardPlan:
    """This process's shards: `count` None means unsharded (one process, discord.py decides)."""

    count: int | None = None
    # None with a count: this process runs every shard.
    ids: tuple[int, ...] | None = None

    @property
    def sharded(self) -> bool:
        return self.count is not None

    def owns(self, guild_id: int | None) -> bool:
        """Whether this process serves `guild_id` (and so posts its digests and feeds)."""
        if self.count is None or self.ids is None:
            return True
        return shard_of(guild_id, self.count) in self.ids

    def describe(self) -> str:
        if self.count is None:
            return "unsharded"
        ids = "all" if self.ids is None else ",".join(str(i) for i in self.ids)
        return f"shards {ids} of {self.count}"
