"""The command core against a real PostgreSQL: languages, permissions, filters, summaries, failures."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from bot import queries
from bot.answers import (
    Absence,
    DayStats,
    Failure,
    LanguageDefaults,
    LanguageSet,
    NoStats,
    Problem,
    RecentChanges,
)
from bot.commands import DATABASE_TROUBLE, CommandCore, Invoker
from bot.rendering import plain_text
from bot.requests import Command, Scope
from teston.core.statuses import DayStatus
from tests.bot_fixtures import (
    CATALOG,
    NOW,
    core,
    insert_change,
    insert_day_stats,
    insert_rollup,
    pool,
)

__all__ = ["core", "pool"]  # fixtures used by name

ALICE = Invoker(user_id=11, guild_id=1)
MODERATOR = Invoker(user_id=12, guild_id=1, can_manage_guild=True)
IN_DM = Invoker(user_id=11, guild_id=None)
T0 = datetime(2025, 5, 3, 11, 0, tzinfo=UTC)


def seconds(n: int) -> datetime:
    return T0 + timedelta(seconds=n)


# --- language defaults -----------------------------------------------------------------------------


async def test_language_lookup_order_is_user_then_guild_then_en(
    core: CommandCore, conn: psycopg.Connection
) -> None:
    for wiki, at in (("enwiki", 1), ("dewiki", 2), ("frwiki", 3)):
        insert_change(conn, event_time=seconds(at), wiki=wiki, title=f"{wiki} page")
    conn.commit()

    async def wiki_of(invoker: Invoker) -> str:
        answer = await core.answer_text("!recent", invoker)
        assert isinstance(answer, RecentChanges)
        return answer.wiki.dbname

    assert await wiki_of(ALICE) == "enwiki"
    assert isinstance(await core.answer_text("!setLang de guild", MODERATOR), LanguageSet)
    assert await wiki_of(ALICE) == "dewiki"
    assert await wiki_of(IN_DM) == "enwiki"  # a server's default applies in that server only
    assert await core.answer_text("!setLang fr", ALICE) == LanguageSet(CATALOG.resolve("fr"), Scope.USER)
    assert await wiki_of(ALICE) == "frwiki"
    assert await wiki_of(IN_DM) == "frwiki"
    assert await wiki_of(MODERATOR) == "dewiki"


async def test_setlang_without_a_code_shows_the_defaults(core: CommandCore) -> None:
    await core.answer_text("!setLang zh-hans guild", MODERATOR)
    answer = await core.answer_text("!setLang", ALICE)
    zh = CATALOG.resolve("zh")
    assert answer == LanguageDefaults(user=None, guild=zh, effective=zh, in_guild=True)


async def test_setting_the_guild_default_needs_manage_server_and_a_server(core: CommandCore) -> None:
    refused = await core.answer_text("!setLang de guild", ALICE)
    assert refused == Problem(
        "Only members with the Manage Server permission can set the server's default.", Command.SETLANG
    )
    in_dm = await core.answer_text("!setLang de guild", Invoker(user_id=12, can_manage_guild=True))
    assert in_dm == Problem(
        "A server's default can only be set inside that server.", Command.SETLANG, missing=Scope.GUILD
    )
    nobody = await core.answer_text("!setLang de", Invoker())
    assert nobody == Problem(
        "Only a Discord user can have a default language.", Command.SETLANG, missing=Scope.USER
    )
    answer = await core.answer_text("!setLang de", ALICE)
    assert answer == LanguageSet(CATALOG.resolve("de"), Scope.USER)


async def test_unknown_languages_get_suggestions(core: CommandCore) -> None:
    answer = await core.answer_text("!setLang enn", ALICE)
    assert isinstance(answer, Problem)
    assert answer.command is Command.SETLANG
    assert answer.problem.startswith("Unknown language 'enn'. Did you mean 'en'")
    assert await core.answer_text("!recent @everyone", ALICE) == Problem(
        "Unknown language '@everyone'.", Command.RECENT
    )


async def test_languages_are_resolved_by_the_catalog(core: CommandCore) -> None:
    for text, dbname in (("zh-hans", "zhwiki"), ("be-tarask", "be_x_oldwiki"), ("wikidata", "wikidatawiki")):
        answer = await core.answer_text(f"!setLang {text}", ALICE)
        assert isinstance(answer, LanguageSet)
        assert answer.wiki.dbname == dbname


# --- !recent ---------------------------------------------------------------------------------------


async def test_recent_is_newest_first_without_bots_or_categorize_unless_asked(
    core: CommandCore, conn: psycopg.Connection
) -> None:
    insert_change(conn, event_time=seconds(1), title="oldest", rcid=1)
    insert_change(conn, event_time=seconds(2), title="by a bot", bot=True, rcid=2)
    insert_change(conn, event_time=seconds(3), title="Category:X", type="categorize", rcid=3)
    insert_change(conn, event_time=seconds(4), title="same second, first", rcid=4)
    insert_change(conn, event_time=seconds(4), title="same second, second", rcid=5)
    insert_change(conn, event_time=seconds(5), title="other wiki", wiki="dewiki", rcid=6)
    conn.commit()

    async def titles(text: str) -> list[str | None]:
        answer = await core.answer_text(text, ALICE)
        assert isinstance(answer, RecentChanges), answer
        return [change.title for change in answer.changes]

    assert await titles("!recent en") == ["same second, second", "same second, first", "oldest"]
    assert await titles("!recent en 2") == ["same second, second", "same second, first"]
    assert await titles("!recent en bots") == [
        "same second, second",
        "same second, first",
        "by a bot",
        "oldest",
    ]
    assert await titles("!recent en all") == [
        "same second, second",
        "same second, first",
        "Category:X",
        "by a bot",
        "oldest",
    ]
    assert await titles("!recent de") == ["other wiki"]
    assert await titles("!recent fr") == []


async def test_recent_reads_the_newest_day_first_across_partitions(
    core: CommandCore, conn: psycopg.Connection
) -> None:
    for days_back in range(5):
        insert_change(conn, event_time=T0 - timedelta(days=days_back), title=f"{days_back} days back")
    conn.commit()
    answer = await core.answer_text("!recent en 3", ALICE)
    assert isinstance(answer, RecentChanges)
    assert [c.title for c in answer.changes] == ["0 days back", "1 days back", "2 days back"]


async def test_recent_after_retention_dropped_a_wikis_changes_says_so(
    core: CommandCore, conn: psycopg.Connection
) -> None:
    # en's changes of 2025-03-01 were rolled up, exported and dropped; only the summary row remains.
    insert_rollup(conn, date(2025, 3, 1))
    insert_day_stats(conn, date(2025, 3, 1), "enwiki", changes=12)
    insert_day_stats(conn, date(2025, 3, 1), "dewiki", changes=0)
    conn.commit()

    en = await core.answer_text("!recent en", ALICE)
    de = await core.answer_text("!recent de", ALICE)

    assert isinstance(en, RecentChanges)
    assert isinstance(de, RecentChanges)
    assert (en.changes, en.newest_day, en.retention_days) == ((), date(2025, 3, 1), 30)
    assert plain_text(en, prefix="!") == (
        "No changes recorded on en.wikipedia.org in the last 30 days "
        "(bot changes and category changes left out), and older ones are not kept. "
        "The newest recorded were on 2025-03-01: !stats 2025-03-01 en"
    )
    assert de.newest_day is None  # rolled up, but never a change: nothing was dropped
    assert plain_text(de, prefix="!").startswith("No changes recorded on de.wikipedia.org yet")


async def test_recent_finding_only_bot_or_category_changes_says_how_to_see_them(
    core: CommandCore, conn: psycopg.Connection
) -> None:
    # be-tarask's only changes are two bot edits and a bot's category change, years old and still stored.
    old = datetime(2021, 8, 27, 13, 0, tzinfo=UTC)
    insert_change(conn, event_time=old, wiki="be_x_oldwiki", title="A", bot=True, rcid=1)
    insert_change(conn, event_time=old, wiki="be_x_oldwiki", title="B", bot=True, rcid=2)
    insert_change(conn, event_time=old, wiki="be_x_oldwiki", title="Category:C", bot=True, type="categorize")
    insert_rollup(conn, date(2021, 8, 27))
    insert_day_stats(conn, date(2021, 8, 27), "be_x_oldwiki", changes=3)
    conn.commit()

    hidden = await core.answer_text("!recent be-tarask 2", ALICE)
    assert isinstance(hidden, RecentChanges)
    assert hidden.changes == ()
    assert hidden.left_out == 3
    assert plain_text(hidden, prefix="!") == (
        "No changes recorded on be-tarask.wikipedia.org other than bot changes or category changes: "
        "3 were left out; !recent be-tarask 2 all shows them."
    )
    shown = await core.answer_text("!recent be-tarask 2 all", ALICE)
    assert isinstance(shown, RecentChanges)
    assert len(shown.changes) == 2
    assert shown.left_out == 0
    # With category changes already included, the bots are what is left out.
    bots_only = await core.answer_text("!recent be-tarask categorize", ALICE)
    assert plain_text(bots_only, prefix="!") == (
        "No changes recorded on be-tarask.wikipedia.org other than bot changes: "
        "3 were left out; !recent be-tarask 10 bots shows them."
    )


async def test_invisible_format_characters_do_not_change_a_command(
    core: CommandCore, conn: psycopg.Connection
) -> None:
    insert_change(conn, event_time=seconds(1), title="visible")
    conn.commit()
    plain = await core.answer_text("!recent en 5", ALICE)
    assert isinstance(plain, RecentChanges)
    assert [c.title for c in plain.changes] == ["visible"]
    # A zero-width space after the name, a byte order mark, a word joiner, a soft hyphen, a joiner and a
    # direction mark: Unicode category Cf, invisible when pasted.
    for text in ("!recent\u200b en 5", "\ufeff!recent en\u2060 5", "!re\u00adcent\u200d en 5\u200e"):
        assert await core.answer_text(text, ALICE) == plain, repr(text)
    assert await core.answer_text("!setLang d\u200be", ALICE) == LanguageSet(
        CATALOG.resolve("de"), Scope.USER
    )


def test_latest_changes_query_uses_the_wiki_index(conn: psycopg.Connection) -> None:
    for days_back in range(3):
        insert_change(conn, event_time=T0 - timedelta(days=days_back))
    conn.commit()
    conn.execute("ANALYZE recent_changes")
    conn.execute("SET enable_seqscan = off")  # tiny tables: ask whether the index *can* serve the query
    query = queries.latest_changes_query(include_bots=False, include_categorize=False)
    plan = "\n".join(
        row[0] for row in conn.execute(psycopg.sql.SQL("EXPLAIN ") + query, {"wiki": "enwiki", "limit": 10})
    )
    # An ordered Append reads the newest day's partition first and stops at the limit: a rare wiki
    # costs one index probe per day kept, never a scan of the days' rows.
    assert "Merge Append" not in plan, plan
    assert "Append" in plan, plan
    assert "Presorted Key: recent_changes.event_time" in plan, plan
    assert plan.count("Index Cond: (wiki = 'enwiki'::text)") == 3, plan
    scans = [line for line in plan.splitlines() if "Index Scan" in line]
    assert "recent_changes_p20250503" in scans[0], plan


# --- !stats ----------------------------------------------------------------------------------------


async def test_stats_reads_the_summary_tables(core: CommandCore, conn: psycopg.Connection) -> None:
    day = date(2025, 2, 4)
    insert_rollup(conn, day)
    insert_day_stats(
        conn, day, "enwiki", changes=1234, edits=1000, bot_changes=34, top_pages=[("Main Page", 9), ("B", 3)]
    )
    insert_day_stats(conn, day, "dewiki", changes=7)
    conn.commit()

    answer = await core.answer_text("!stats 2025-02-04 en", ALICE)

    assert isinstance(answer, DayStats)
    assert (answer.figures.changes, answer.figures.edits, answer.figures.bot_changes) == (1234, 1000, 34)
    assert [(p.rank, p.title, p.changes) for p in answer.top_pages] == [(1, "Main Page", 9), (2, "B", 3)]
    assert answer.rollup is not None
    assert answer.rollup.status is DayStatus.FINAL
    german = await core.answer_text("!stats 2025-02-04 de", ALICE)
    assert isinstance(german, DayStats)
    assert german.figures.changes == 7


async def test_stats_without_data_says_why(core: CommandCore, conn: psycopg.Connection) -> None:
    insert_rollup(conn, date(2025, 2, 5))
    insert_rollup(conn, date(2025, 2, 6), incomplete=True)
    conn.commit()

    never = await core.answer_text("!stats 2025-02-04 en", ALICE)
    assert isinstance(never, NoStats)
    assert never.absence is Absence.NOT_COLLECTED
    quiet = await core.answer_text("!stats 2025-02-05 en", ALICE)
    assert isinstance(quiet, NoStats)
    assert quiet.absence is Absence.NONE_SEEN
    interrupted = await core.answer_text("!stats 2025-02-06 en", ALICE)
    assert isinstance(interrupted, NoStats)
    assert interrupted.rollup is not None
    assert interrupted.rollup.incomplete


async def test_stats_of_a_day_collected_but_not_rolled_up(
    core: CommandCore, conn: psycopg.Connection
) -> None:
    conn.execute("INSERT INTO day_arrivals (day, last_received_at) VALUES (%s, now())", (date(2025, 2, 7),))
    conn.commit()
    answer = await core.answer_text("!stats 2025-02-07 en", ALICE)
    assert isinstance(answer, NoStats)
    assert answer.absence is Absence.NOT_ROLLED_UP


async def test_stats_of_today_are_partial(core: CommandCore, conn: psycopg.Connection) -> None:
    today = NOW.date()
    computed = NOW - timedelta(minutes=5)
    insert_rollup(conn, today, status="partial", computed_at=computed)
    insert_day_stats(conn, today, "enwiki", changes=5, computed_at=computed)
    conn.commit()
    answer = await core.answer_text("!stats today", ALICE)
    assert isinstance(answer, DayStats)
    assert answer.rollup is not None
    assert answer.rollup.status is DayStatus.PARTIAL
    assert answer.figures.computed_at == computed


async def test_bad_arguments_become_problems_not_exceptions(core: CommandCore) -> None:
    for text in (
        "!stats 2025-02-30",
        "!stats 1999-01-01",
        "!stats 2030-01-01",
        "!recent en x y",
        "!recent 0",
    ):
        answer = await core.answer_text(text, ALICE)
        assert isinstance(answer, Problem), (text, answer)


# --- robustness ------------------------------------------------------------------------------------


async def test_database_trouble_is_a_failure_answer() -> None:
    # A pool whose server does not exist: every checkout fails.
    unreachable = AsyncConnectionPool(
        "host=127.0.0.1 port=9 dbname=none connect_timeout=1", min_size=0, max_size=1, open=False, timeout=1
    )
    await unreachable.open(wait=False)
    try:
        broken = CommandCore(database=unreachable, catalog=CATALOG, clock=lambda: NOW, query_timeout=3)
        assert await broken.answer_text("!recent en", ALICE) == Failure(DATABASE_TROUBLE)
        assert await broken.answer_text("!help", ALICE) != Failure(DATABASE_TROUBLE)
    finally:
        await unreachable.close()


async def test_postgres_itself_cancels_a_runaway_statement(pool: AsyncConnectionPool) -> None:
    async with pool.connection() as conn:
        await queries.limit_statement_time(conn, 0.05)
        with pytest.raises(psycopg.errors.QueryCanceled):
            await conn.execute("SELECT pg_sleep(2)")


async def test_concurrent_commands_do_not_interfere(core: CommandCore, conn: psycopg.Connection) -> None:
    insert_change(conn, event_time=seconds(1), title="English", wiki="enwiki")
    insert_change(conn, event_time=seconds(1), title="Deutsch", wiki="dewiki")
    conn.commit()
    users = [Invoker(user_id=100 + i, guild_id=None) for i in range(12)]
    await asyncio.gather(
        *(core.answer_text("!setLang de" if i % 2 else "!setLang en", u) for i, u in enumerate(users))
    )

    answers: list[Any] = await asyncio.gather(*(core.answer_text("!recent", u) for u in users))

    assert [a.changes[0].title for a in answers] == ["English", "Deutsch"] * 6
