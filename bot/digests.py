"""Daily digests: which days are due (pure), and the bot-process loop that posts them to Discord.

A digest posts day D at D+1 `post_at` UTC (00:30 by default, after the nightly roll-up at 00:15 has made
D final). It waits for D's roll-up to be final, for at most `FINAL_WAIT` past the post time; then it posts
what there is (partial figures say so, a day TestON did not collect says that). A day missed while no bot
ran is posted late, once, going back at most `CATCH_UP_DAYS`.

Each bot process runs a `DigestPoster`; before sending, a process claims `(digest, day)` in
`digest_posts` (see `bot.digest_store`), so however many processes run, each day is posted once. A claim
whose process died before Discord accepted the post is taken over after `CLAIM_LEASE`. Every message of
a day's post carries the same nonce whenever it is sent (`digest_nonce`), so a post sent again after a
failure (by the same process, at its next round) is answered with the messages Discord already created
rather than posted twice; a process dying between Discord accepting the post and recording it, and the
day taken over by another process after the lease, posts it again (the one duplicate window). A channel
that is gone (404) or closed to TestON (403) pauses its digest; `!digests` shows why, `!digest` resumes.
With shards (`SHARD_IDS`), a process posts only the digests of the guilds on its shards (`bot.shards`).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import os
import socket
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta

import discord

from bot import digest_store
from bot.answers import Chart, DayStats, NoStats
from bot.commands import CommandCore, Invoker
from bot.feeds.plan import NONCE_LENGTH
from bot.feeds.poster import CHANNEL_GONE, NOT_ALLOWED
from bot.messages import Attachment, Message
from bot.rendering import discord_reply
from bot.requests import ChartRequest, StatsRequest

log = logging.getLogger(__name__)

DIGEST_INTERVAL = 60.0
FINAL_WAIT = timedelta(hours=6)
CATCH_UP_DAYS = 7
CLAIM_LEASE = timedelta(minutes=10)
NO_MENTIONS = discord.AllowedMentions.none()


def post_time(day: date, at: time) -> datetime:
    """When the digest of `day` is due: the next day at `at`, UTC."""
    return datetime.combine(day + timedelta(days=1), at, tzinfo=UTC)


def due_days(
    now: datetime, at: time, created_at: datetime, *, catch_up_days: int = CATCH_UP_DAYS
) -> list[date]:
    """The days whose post time has come by `now`, from the first one due after the digest was created."""
    now = now.astimezone(UTC)
    last = now.date() - timedelta(days=1 if now.timetz().replace(tzinfo=None) >= at else 2)
    first = created_at.astimezone(UTC).date() - timedelta(days=1)
    if post_time(first, at) < created_at:
        first += timedelta(days=1)
    first = max(first, last - timedelta(days=catch_up_days - 1))
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def digest_nonce(digest_id: int, day: date, index: int) -> str:
    """The nonce of message `index` of a digest's post of `day`: the same every time it is sent."""
    nonce = f"d{digest_id}-{day:%Y%m%d}-{index}"
    if len(nonce) > NONCE_LENGTH:
        nonce = "d" + hashlib.sha256(nonce.encode()).hexdigest()[: NONCE_LENGTH - 1]
    return nonce


def digest_messages(label: str, day: date, stats: DayStats | NoStats, chart: Chart | None) -> list[Message]:
    """The post: a heading, the day's `!stats` reply, and its chart attached to the last message."""
    messages = list(discord_reply(stats, prefix="!").messages)
    first = messages[0]
    heading = f"**Daily digest** of '{label}' for {day.isoformat()} (UTC)"
    messages[0] = Message(content=f"{heading}\n{first.content}".strip(), embeds=first.embeds)
    if chart is not None:
        last = messages[-1]
        messages[-1] = Message(
            content=last.content, embeds=last.embeds, attachments=(Attachment(chart.filename, chart.png),)
        )
    return messages


class DigestPoster:
    """Posts every due digest of the database through one Discord client, every `interval` seconds."""

    def __init__(
        self,
        core: CommandCore,
        client: discord.Client,
        *,
        interval: float = DIGEST_INTERVAL,
        clock: Callable[[], datetime] | None = None,
        claimer: str | None = None,
        owns: Callable[[int | None], bool] | None = None,
    ) -> None:
        self.core = core
        self.client = client
        self.interval = interval
        self.clock = clock or core.clock
        self.claimer = claimer or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        # Whether this process serves a guild (its shard); another process posts the others' digests.
        self.owns = owns or (lambda guild_id: True)

    async def run(self) -> None:
        """Post due digests until cancelled; a failed round is logged and the next one tried."""
        await self.client.wait_until_ready()
        while True:
            try:
                await self.post_due()
            except Exception:
                log.exception("posting daily digests failed; trying again in %.0f s", self.interval)
            await asyncio.sleep(self.interval)

    async def post_due(self) -> int:
        """Post every due, unposted day of every digest of this process's guilds; the number of posts sent."""
        now = self.clock()
        async with self.core.database.connection() as conn:
            digests = await digest_store.active_digests(conn)
        sent = 0
        for digest in digests:
            if not self.owns(digest.guild_id):
                continue
            days = due_days(now, digest.post_at, digest.created_at)
            if not days:
                continue
            async with self.core.database.connection() as conn:
                done = await digest_store.posted_days(conn, digest.id, days[0])
            for day in days:
                if day not in done and await self._post(digest, day, now):
                    sent += 1
        return sent

    async def _post(self, digest: digest_store.StoredDigest, day: date, now: datetime) -> bool:
        wiki = self.core.catalog.by_dbname(digest.wiki)
        if wiki is None:
            return False
        async with self.core.database.connection() as conn:
            final = await digest_store.day_is_final(conn, day)
            if not final and now < post_time(day, digest.post_at) + FINAL_WAIT:
                return False
            if not await digest_store.claim_post(
                conn, digest.id, day, claimer=self.claimer, lease=CLAIM_LEASE
            ):
                return False
        stats = await self.core.answer(StatsRequest(day=day, language=wiki.label), Invoker())
        if not isinstance(stats, DayStats | NoStats):
            log.warning("digest #%d: no figures for %s (%s); trying again later", digest.id, day, stats)
            return False
        chart = None
        if isinstance(stats, DayStats):
            drawn = await self.core.answer(
                ChartRequest(first=day, last=day, languages=(wiki.label,), hourly=True), Invoker()
            )
            chart = drawn if isinstance(drawn, Chart) else None
        channel = self.client.get_partial_messageable(digest.channel_id, guild_id=digest.guild_id)
        first_id: int | None = None
        try:
            for index, message in enumerate(digest_messages(wiki.label, day, stats, chart)):
                files = [discord.File(io.BytesIO(a.data), a.filename) for a in message.attachments]
                # discord.py sends `enforce_nonce: true` with a nonce.
                sent = await channel.send(
                    content=message.content or None,
                    embeds=[discord.Embed.from_dict(e.to_dict()) for e in message.embeds],
                    files=files,
                    allowed_mentions=NO_MENTIONS,
                    nonce=digest_nonce(digest.id, day, index),
                )
                first_id = first_id or sent.id
        except (discord.NotFound, discord.Forbidden) as error:
            reason = CHANNEL_GONE if isinstance(error, discord.NotFound) else NOT_ALLOWED
            log.warning("digest #%d paused: %s (%s)", digest.id, reason, error)
            async with self.core.database.connection() as conn:
                await digest_store.pause_digest(conn, digest.id, reason)
            return False
        except discord.HTTPException as error:
            # The claim stays: this process sends the post again at its next round (the same nonces),
            # another one once the lease is over.
            log.warning(
                "digest #%d could not be posted in channel %d: %s", digest.id, digest.channel_id, error
            )
            return False
        async with self.core.database.connection() as conn:
            await digest_store.record_post(conn, digest.id, day, first_id)
        log.info("posted digest #%d of %s for %s", digest.id, wiki.label, day)
        return True
