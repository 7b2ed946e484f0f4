"""Bot shards: `SHARD_COUNT`/`SHARD_IDS`, which process serves which guild, and two bot processes.

The process test runs `teston bot` twice as OS processes (discord.py pointed at the fake Discord), each
with two of four shards, and four guilds whose ids fall on the four shards.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.shards import ShardPlan, shard_of
from teston.core.settings import SettingsError, load_settings
from tests.fakediscord import FakeDiscord

# A snowflake's top bits are its time in ms; Discord's shard is that time modulo the shard count.
_BASE_MS = 700_000_000_000


def guild_id_on(shard: int, count: int) -> int:
    return ((_BASE_MS - _BASE_MS % count) + count + shard) << 22


def test_a_guild_is_on_the_shard_discord_computes() -> None:
    assert shard_of(81384788765712384, 1) == 0
    # 197038439483310086 was made 46977624770 ms after Discord's epoch (its top 42 bits).
    assert shard_of(197038439483310086, 1000) == 770
    assert shard_of(197038439483310086, 4) == 2
    assert [shard_of(guild_id_on(n, 4), 4) for n in range(4)] == [0, 1, 2, 3]
    assert shard_of(None, 4) == 0  # direct messages come on shard 0
    with pytest.raises(ValueError, match="shard_count must be at least 1"):
        shard_of(1, 0)


def test_a_process_owns_the_guilds_of_its_shards() -> None:
    guilds = [guild_id_on(n, 4) for n in range(4)]
    assert [ShardPlan().owns(g) for g in [*guilds, None]] == [True] * 5
    assert [ShardPlan(4).owns(g) for g in [*guilds, None]] == [True] * 5  # every shard in one process
    first, second = ShardPlan(4, (0, 1)), ShardPlan(4, (2, 3))
    assert [first.owns(g) for g in [*guilds, None]] == [True, True, False, False, True]
    assert [second.owns(g) for g in [*guilds, None]] == [False, False, True, True, False]
    assert first.describe() == "shards 0,1 of 4"
    assert ShardPlan().describe() == "unsharded"


def _settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> object:
    for name in ("SHARD_COUNT", "SHARD_IDS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings(env_file=None).discord


def test_shard_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    unsharded = _settings(monkeypatch)
    assert (unsharded.shard_count, unsharded.shard_ids) == (None, None)  # type: ignore[attr-defined]
    both = _settings(monkeypatch, SHARD_COUNT="4", SHARD_IDS=" 2, 3")
    assert (both.shard_count, both.shard_ids) == (4, (2, 3))  # type: ignore[attr-defined]
    one = _settings(monkeypatch, SHARD_COUNT="2", SHARD_IDS="1")
    assert one.shard_ids == (1,)  # type: ignore[attr-defined]
    alone = _settings(monkeypatch, SHARD_COUNT="3")
    assert (alone.shard_count, alone.shard_ids) == (3, None)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"SHARD_IDS": "0"}, "SHARD_IDS: Value error, needs SHARD_COUNT"),
        ({"SHARD_COUNT": "2", "SHARD_IDS": "0,2"}, "SHARD_IDS: Value error, shard 2 is outside 0..1"),
        (
            {"SHARD_COUNT": "4", "SHARD_IDS": "1,1"},
            "SHARD_IDS: Value error, shard 1 is listed more than once",
        ),
        ({"SHARD_COUNT": "4", "SHARD_IDS": "0;1"}, "SHARD_IDS: Value error, must be comma-separated"),
        ({"SHARD_COUNT": "0"}, "SHARD_COUNT: Input should be greater than or equal to 1"),
        ({"SHARD_COUNT": "two"}, "SHARD_COUNT: Input should be a valid integer"),
    ],
)
def test_a_wrong_shard_setting_is_named(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], problem: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        _settings(monkeypatch, **env)
    assert problem in str(caught.value)


# -- two bot processes ---------------------------------------------------------------------------


class BotProcess:
    """`teston bot` in a process of its own, its log lines collected as they come."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stderr is not None
        async for line in self.process.stderr:
            self.lines.append(line.decode(errors="replace").rstrip())

    async def wait_for_line(self, text: str, timeout: float = 60) -> str:
        async with asyncio.timeout(timeout):
            while True:
                found = next((line for line in self.lines if text in line), None)
                if found is not None:
                    return found
                if self.process.returncode is not None or self._reader.done():
                    raise AssertionError("teston bot ended:\n" + "\n".join(self.lines[-30:]))
                await asyncio.sleep(0.1)

    async def stop(self) -> int:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 20)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        return self.process.returncode or 0


@contextlib.asynccontextmanager
async def bot_process(
    fake: FakeDiscord, db_url: str, home: Path, shard_ids: str
) -> AsyncIterator[BotProcess]:
    env = {
        **os.environ,
        "DB_ADDR": db_url,
        "DISCORD_TOKEN": fake.token,
        "TESTON_HOME": str(home),
        "SHARD_COUNT": "4",
        "SHARD_IDS": shard_ids,
        "LOG_LEVEL": "INFO",
        "METRICS_PORT": "0",  # two processes on one machine: no /metrics needed here
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.fakediscord.launch",
        fake.base_url,
        fake.gateway_url,
        "bot",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        cwd=Path(__file__).parent.parent,
    )
    bot = BotProcess(process)
    try:
        yield bot
    finally:
        code = await bot.stop()
        assert code == 0, "\n".join(bot.lines[-30:])


async def test_two_bot_processes_split_four_shards_and_answer_each_command_once(
    db_url: str, tmp_path: Path
) -> None:
    async with FakeDiscord.start(recommended_shards=4) as fake:
        channels = [fake.add_guild(guild_id_on(n, 4), f"guild on shard {n}") for n in range(4)]
        per_shard = [sum(1 for g in fake.world.guilds() if shard_of(g.id, 4) == n) for n in range(4)]
        async with (
            bot_process(fake, db_url, tmp_path, "0,1") as first,
            bot_process(fake, db_url, tmp_path, "2,3") as second,
        ):
            ready = [
                await first.wait_for_line("connected to Discord"),
                await second.wait_for_line("connected to Discord"),
            ]
            assert ready[0].endswith(f"in {per_shard[0] + per_shard[1]} servers (shards 0,1 of 4)")
            assert ready[1].endswith(f"in {per_shard[2] + per_shard[3]} servers (shards 2,3 of 4)")
            sessions = fake.gateway.sessions
            assert {n: sessions[n].identify["shard"] for n in sessions} == {n: [n, 4] for n in range(4)}

            sent = [
                await fake.send_user_message("!help recent", author=fake.users.alice, channel=channel)
                for channel in channels
            ]
            for channel, command in zip(channels, sent, strict=True):
                await fake.wait_for_bot_messages(channel, after=command, timeout=30)
            answered = [
                await fake.invoke_slash("help", user=fake.users.alice, channel=channel, timeout=30)
                for channel in channels
            ]
            # Both processes stay connected a while: nothing answers a second time.
            await asyncio.sleep(1.0)

        for channel in channels:
            replies = [m for m in fake.bot_messages(channel) if m.interaction_metadata is None]
            assert len(replies) == 1, f"{channel.name}: {[m.content for m in replies]}"
        for interaction in answered:
            assert [r.kind for r in interaction.responses].count("callback") == 1
        # Each guild's events went to its own shard's session only, and so to one process only.
        for shard, session in sessions.items():
            delivered = {
                int(p["d"]["guild_id"])
                for p in session.sent
                if p["t"] in ("MESSAGE_CREATE", "INTERACTION_CREATE")
            }
            assert delivered == {guild_id_on(shard, 4)}, shard
    assert not fake.internal_errors
