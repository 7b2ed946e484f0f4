"""Every PostgreSQL advisory lock TestON takes, and the keys it takes them by.

PostgreSQL keeps one-key locks (`pg_advisory_lock(int8)`) and two-key locks
(`pg_advisory_lock(int4, int4)`) apart, so a key of one kind never meets a key of the other. Every key
starts with TestON's own prefix 0x7E57 ("TEST"), so another application's locks on the same database are
unlikely to collide with ours.

  key                                scope        serialises                                taken in
  MIGRATION_KEY      0x7E57_0000     session      migrations of processes started together  core.database
  PARTITION_DDL_KEY  0x7E57_0001     transaction  creating and dropping daily partitions    core.partitions
  ARRIVAL_KEY        0x7E57_0010     transaction  arrival numbers drawn until the commit,   ingestion.writer
                                                  so none smaller appears later
  JOB_CLASS          0x7E57_0002,    session,     one run of a job kind at a time           analytics.runs
                     CRC-32(kind)    try
  STREAM_CLASS       0x7E57_0003,    session,     one ingester per stream                   ingestion.
                     CRC-32(stream)  try                                                    stream_lock
  FEEDS_CLASS        0x7E57_0004,    transaction  `!watch` within one server, so two at     bot.feeds.store
                     CRC-32(guild)                once cannot both pass the feed limit

The second key of a two-key lock is a name's CRC-32 folded into int4: stable across processes, machines
and PostgreSQL versions (unlike Python's `hash` or the server's internal `hashtext`). Two names sharing
a CRC-32 would only exclude each other.
"""

from __future__ import annotations

import zlib

MIGRATION_KEY = 0x7E57_0000
PARTITION_DDL_KEY = 0x7E57_0001
ARRIVAL_KEY = 0x7E57_0010

JOB_CLASS = 0x7E57_0002
STREAM_CLASS = 0x7E57_0003
FEEDS_CLASS = 0x7E57_0004


def fold_crc32(name: str) -> int:
    """The CRC-32 of `name` as a signed int4, the second key of a two-key advisory lock."""
    value = zlib.crc32(name.encode())
    return value - (1 << 32) if value >= 1 << 31 else value


def job_lock_key(kind: str) -> tuple[int, int]:
    """The two int4 keys of a job kind's lock."""
    return JOB_CLASS, fold_crc32(kind)


def stream_lock_key(stream: str) -> tuple[int, int]:
    """The two int4 keys of `pg_try_advisory_lock(int4, int4)` for a stream."""
    return STREAM_CLASS, fold_crc32(stream)


def feeds_lock_key(guild_id: int) -> tuple[int, int]:
    """The two int4 keys of a server's feeds lock."""
    return FEEDS_CLASS, fold_crc32(str(guild_id))
