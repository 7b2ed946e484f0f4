"""The pure parts of live feeds: filter words, matching, the posts, and planning a feed's next step."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime

import pytest

from bot.answers import Change
from bot.arguments import parse_command
from bot.feeds.filters import DEFAULT_FILTER, FeedFilter, FilterError, parse_filter_words, parse_filters
from bot.feeds.matching import FeedChange, is_anonymous, matches
from bot.feeds.pacing import ChannelPace
from bot.feeds.plan import (
    Advance,
    Backlog,
    Post,
    Skip,
    next_step,
    nonce,
    resent_step,
    shared_nonce,
    shared_post,
)
from bot.feeds.posts import change_embed, changes_message, fitting, plain_post, skipped_line
from bot.messages import EMBED_TOTAL_LIMIT
from bot.rendering import discord_reply
from bot.requests import Command, UsageError, WatchRequest
from bot.subscription_arguments import unwatch_request, watch_request
from tests.bot_fixtures import CATALOG

TODAY = date(2025, 5, 3)
WHEN = datetime(2025, 5, 3, 12, 30, 5, tzinfo=UTC)


def change(**fields: object) -> Change:
    values: dict[str, object] = {
        "event_time": WHEN,
        "server_name": "en.wikipedia.org",
        "type": "edit",
        "namespace": 0,
        "title": "Main Page",
        "user_name": "Alice",
        "bot": False,
        "comment": "fix",
        "revision_old": 10,
        "revision_new": 11,
        "length_old": 100,
        "length_new": 160,
        "log_type": None,
        "log_action": None,
    }
    values.update(fields)
    return Change(**values)  # type: ignore[arg-type]


def item(arrival: int, *, minor: bool | None = False, **fields: object) -> FeedChange:
    return FeedChange(arrival=arrival, change=change(**fields), minor=minor)


# --- filter words ---------------------------------------------------------------------------------


def test_every_filter_word_is_parsed_and_written_back_canonically() -> None:
    words = "type=new TYPE=edit|log ns=4,0 bots minor=no min=500 title=Foo_bar user=Some_One anon"
    parsed = parse_filters(words.split())
    assert parsed == FeedFilter(
        types=frozenset({"edit", "new", "log"}),
        namespaces=frozenset({0, 4}),
        bots=True,
        minor=False,
        min_bytes=500,
        title_prefix="Foo bar",
        user="Some One",
        anonymous_only=True,
    )
    canonical = parsed.words()
    assert canonical == "ns=0,4 bots minor=no min=500 title=Foo_bar user=Some_One anon"
    assert parse_filter_words(canonical) == parsed
    assert parse_filters([]) == DEFAULT_FILTER
    assert DEFAULT_FILTER.words() == ""
    assert parse_filters(["type=categorize"]).words() == "type=categorize"


@pytest.mark.parametrize(
    ("words", "problem"),
    [
        (["type=move"], "Unknown change type 'move'"),
        (["ns=main"], "'main' is not a namespace number"),
        (["ns="], "'' is not a namespace number"),
        (["minor=yes"], "minor= only takes no"),
        (["min=0"], "min= takes a number of bytes"),
        (["min=lots"], "min= takes a number of bytes"),
        (["title="], "title= needs a value"),
        (["user=a", "user=b"], "Give user= once"),
        (["everything"], "Unknown filter 'everything'"),
        (["colour=red"], "Unknown filter 'colour=red'"),
    ],
)
def test_a_bad_filter_word_says_what_is_wrong(words: list[str], problem: str) -> None:
    with pytest.raises(FilterError, match=problem.replace("(", r"\(")):
        parse_filters(words)


def test_watch_and_unwatch_text_and_slash_forms_are_checked_alike() -> None:
    request = parse_command("!watch de type=new bots", prefix="!", today=TODAY)
    assert request == WatchRequest("de", parse_filters(["type=new", "bots"]))
    assert watch_request("de", "type=new bots") == request
    assert parse_command("!unwatch #3", prefix="!", today=TODAY) == unwatch_request(3)
    for text, problem in [
        ("!watch", "Which wiki?"),
        ("!watch ns=0", "Give the language first"),
        ("!watch en min=x", "min= takes"),
        ("!unwatch", "Which feed?"),
        ("!unwatch x", "'x' is not a feed number"),
        ("!unwatch 0", "'0' is not a feed number"),
        ("!watches all", "Unexpected extra argument 'all'"),
    ]:
        with pytest.raises(UsageError) as raised:
            parse_command(text, prefix="!", today=TODAY)
        assert raised.value.problem.startswith(problem), text
        assert raised.value.command in (Command.WATCH, Command.UNWATCH, Command.WATCHES)
    with pytest.raises(UsageError):
        watch_request("en", "ns=-")
    with pytest.raises(UsageError):
        unwatch_request(-1)


# --- matching -------------------------------------------------------------------------------------


def test_matching_applies_each_filter() -> None:
    default = DEFAULT_FILTER
    assert matches(default, item(1))
    assert not matches(default, item(1, bot=True))
    assert matches(parse_filters(["bots"]), item(1, bot=True))
    assert not matches(default, item(1, type="categorize"))
    assert matches(parse_filters(["type=categorize"]), item(1, type="categorize"))
    assert not matches(parse_filters(["type=new"]), item(1))
    assert not matches(parse_filters(["ns=1"]), item(1))
    assert matches(parse_filters(["ns=1,0"]), item(1))
    assert matches(default, item(1, minor=True))
    assert not matches(parse_filters(["minor=no"]), item(1, minor=True))
    assert matches(parse_filters(["minor=no"]), item(1, minor=None))
    assert matches(parse_filters(["min=60"]), item(1))  # +60
    assert not matches(parse_filters(["min=61"]), item(1))
    assert matches(parse_filters(["min=60"]), item(1, length_old=200, length_new=140))  # −60
    assert matches(parse_filters(["min=160"]), item(1, type="new", length_old=None))
    assert not matches(parse_filters(["min=1"]), item(1, type="log", length_old=None, length_new=None))
    assert matches(parse_filters(["title=Main"]), item(1))
    assert not matches(parse_filters(["title=main"]), item(1))
    assert matches(parse_filters(["user=Alice"]), item(1))
    assert not matches(parse_filters(["user=Bob"]), item(1))
    assert not matches(parse_filters(["anon"]), item(1))
    assert matches(parse_filters(["anon"]), item(1, user_name="192.0.2.7"))
    assert matches(parse_filters(["anon"]), item(1, user_name="2001:db8::1"))
    assert matches(parse_filters(["anon"]), item(1, user_name="~2025-12345-67"))
    assert not is_anonymous(None)
    assert not is_anonymous("Bob~2025")


# --- posts ----------------------------------------------------------------------------------------


def test_a_post_links_the_diff_and_the_user_and_escapes_the_comment() -> None:
    embed = change_embed(change(comment="see [[x]] @everyone *bold* " + "y" * 300, user_name="A_b"))
    data = embed.to_dict()
    assert data["title"] == "Main Page"
    assert data["url"] == "https://en.wikipedia.org/w/index.php?diff=11&oldid=10"
    description = data["description"]
    assert description.startswith(
        "[A\\_b](https://en.wikipedia.org/wiki/Special:Contributions/A_b) · **+60** · edit"
    )
    assert "\\[\\[x\\]\\]" in description
    assert "@\u200beveryone" in description
    assert "\\*bold\\*" in description
    assert description.endswith("…”")
    assert len(description) < 400
    assert data["footer"]["text"] == "en.wikipedia.org · 2025-05-03 12:30:05 UTC"
    removed = change_embed(change(length_old=500, length_new=20, bot=True)).to_dict()["description"]
    assert "**−480**" in removed
    assert "edit, bot" in removed
    log = change_embed(change(type="log", log_type="block", log_action="block", title="User:X")).to_dict()
    assert log["url"] == "https://en.wikipedia.org/wiki/User:X"
    assert "log: block/block" in log["description"]
    assert plain_post(change()) == (
        "2025-05-03 12:30:05 UTC | Main Page | Alice | +60 | edit | fix | "
        "https://en.wikipedia.org/w/index.php?diff=11&oldid=10"
    )


def test_a_message_holds_at_most_ten_posts_within_discord_limits() -> None:
    many = [change(title=f"Page {n}") for n in range(15)]
    assert fitting(many) == 10
    assert len(changes_message(many[:10]).embeds) == 10
    long = [change(title="T" * 250, comment="c" * 400, user_name="u" * 200) for _ in range(10)]
    shown = fitting(long)
    assert 1 <= shown < 10
    assert sum(change_embed(c).size() for c in long[:shown]) <= EMBED_TOTAL_LIMIT
    wiki = CATALOG.resolve("en")
    line = skipped_line(1234, wiki, "!")
    assert line.startswith("Skipped 1,234 changes on en.wikipedia.org")
    assert "!recent en" in line


# --- planning -------------------------------------------------------------------------------------


def backlog_of(items: list[FeedChange], *, read_to: int | None = None, keep=lambda i: True) -> Backlog:  # type: ignore[no-untyped-def]
    backlog = Backlog()
    for each in items:
        backlog.saw(each.arrival)
        if keep(each):
            backlog.add(each)
    if read_to is not None:
        backlog.saw(read_to)
    return backlog


def test_the_next_step_posts_ten_then_the_rest_covering_rows_that_match_nothing() -> None:
    items = [item(n) for n in range(1, 26)]
    step = next_step(backlog_of(items, read_to=40), cursor=0)
    assert isinstance(step, Post)
    assert [i.arrival for i in step.changes] == list(range(1, 11))
    assert step.to == 10
    step = next_step(backlog_of(items[20:], read_to=40), cursor=20)
    assert isinstance(step, Post)
    assert len(step.changes) == 5
    assert step.to == 40
    assert next_step(backlog_of([], read_to=40), cursor=30) == Advance(40)
    assert next_step(backlog_of([]), cursor=30) is None


def test_more_than_a_hundred_behind_is_one_line_then_the_newest_ten() -> None:
    items = [item(n) for n in range(1, 131)]
    step = next_step(backlog_of(items), cursor=0)
    assert step == Skip(count=120, to=120)
    after = next_step(backlog_of(items[120:]), cursor=120)
    assert isinstance(after, Post)
    assert [i.arrival for i in after.changes] == list(range(121, 131))
    assert next_step(backlog_of(items[:100]), cursor=0) == Post(changes=tuple(items[:10]), to=10)


def test_a_step_written_down_is_rebuilt_the_same_and_keeps_its_nonce() -> None:
    items = [item(n) for n in range(1, 8)]
    planned = next_step(backlog_of(items, read_to=9), cursor=0)
    assert planned == Post(changes=tuple(items), to=9)
    assert resent_step(backlog_of(items, read_to=9), 9, skip=False) == planned
    assert resent_step(backlog_of(items), 7, skip=True) == Skip(count=7, to=7)
    assert nonce(3, 9) == nonce(3, 9)
    assert nonce(3, 9) != nonce(3, 10) != nonce(4, 9)
    assert len(nonce(2**62, 2**62)) == 25


def test_a_post_with_room_takes_along_the_first_changes_of_the_channels_other_feeds() -> None:
    lead = next_step(backlog_of([item(n) for n in (1, 2, 3)], read_to=5), cursor=0)
    assert isinstance(lead, Post)
    second = backlog_of([item(n) for n in (4, 6, 8)], read_to=9)  # all of it fits: covers what it read
    third = backlog_of([item(n) for n in range(10, 20)], read_to=30)  # room for four of its ten
    fourth = backlog_of([item(40)])  # no room left
    idle = backlog_of([], read_to=50)
    shares = shared_post(lead, [(2, second), (7, idle), (3, third), (4, fourth)])
    assert shares == [
        (2, Post(changes=tuple(second.first), to=9)),
        (3, Post(changes=tuple(third.first[:4]), to=13)),
    ]
    # Discord's 6,000 characters hold fewer long changes.
    alone = Post(changes=(item(1),), to=1)
    long = backlog_of(
        [item(60 + n, title="T" * 250, comment="c" * 400, user_name="u" * 200) for n in range(9)]
    )
    [(_, fitted)] = shared_post(alone, [(5, long)])
    assert len(fitted.changes) == 7  # room for nine embeds, but not for their characters
    shown = [alone.changes[0].change, *(i.change for i in fitted.changes)]
    assert sum(change_embed(c).size() for c in shown) <= EMBED_TOTAL_LIMIT
    # A feed so far behind it posts a skip line goes alone.
    behind = backlog_of([item(100 + n) for n in range(120)])
    assert shared_post(lead, [(6, behind), (2, second)]) == [(2, Post(changes=tuple(second.first), to=9))]


def test_a_shared_message_has_one_nonce_from_its_feeds_and_their_steps() -> None:
    assert shared_nonce([(1, 10), (2, 20)]) == shared_nonce([(2, 20), (1, 10)])
    assert len({shared_nonce([(1, 10), (2, 20)]), shared_nonce([(1, 10), (2, 21)]), nonce(1, 10)}) == 3
    assert len(shared_nonce([(2**62, 2**62), (1, 1)])) == 25


def test_feed_replies_render_for_discord() -> None:
    from bot.feeds.answers import FeedCreated, FeedList, FeedRow

    row = FeedRow(
        id=4,
        guild_id=1,
        channel_id=99,
        wiki="enwiki",
        filters="ns=0 user=A_*b*",
        created_at=WHEN,
        cursor=0,
        pending_to=None,
        pending_skip=False,
        posted=12,
        skipped=0,
        last_posted_at=WHEN,
        paused_reason=None,
        paused_at=None,
    )
    wiki = CATALOG.resolve("en")
    created = discord_reply(FeedCreated(row, wiki), prefix="!")
    assert created.summary.startswith("Feed #4: changes on en.wikipedia.org will be posted")
    assert "user=A\\_\\*b\\*" in created.messages[0].content
    assert "!unwatch 4" in created.messages[0].content
    paused = replace(row, paused_reason="the channel was deleted", paused_at=WHEN)
    listing = discord_reply(FeedList((row, paused), {"enwiki": wiki}), prefix="!").messages[0].content
    line = (
        "#4 · en.wikipedia.org → <#99> · ns=0 user=A\\_\\*b\\* · "
        "live (12 posted, last at 2025-05-03 12:30 UTC)"
    )
    assert line in listing
    assert "paused since 2025-05-03 12:30 UTC: the channel was deleted" in listing
    empty = discord_reply(FeedList((), {}), prefix="!").summary
    assert empty == "This server has no feeds. Start one with !watch <lang> [filters…]."


def test_a_channel_is_posted_in_at_once_until_its_window_is_full() -> None:
    pace = ChannelPace(limit=5, per=5.0)
    assert pace.delay(1, 100.0) == 0.0
    for at in (100.0, 100.2, 100.4, 100.6):
        pace.record(1, at)
    assert pace.delay(1, 100.7) == 0.0  # four in the window: a fifth may go
    pace.record(1, 100.8)
    # Five posts since 100.0: the next waits until the first leaves the window.
    assert pace.delay(1, 101.0) == pytest.approx(4.0)
    assert pace.delay(2, 101.0) == 0.0  # another channel is not held back
    pace.record(1, 105.0)
    # Now the oldest in the window is the post at 100.2.
    assert pace.delay(1, 105.0) == pytest.approx(0.2)
    assert pace.delay(1, 106.0) == 0.0


def test_no_window_of_a_channel_ever_holds_more_than_the_limit() -> None:
    pace = ChannelPace(limit=5, per=5.0)
    now, posts = 0.0, []
    for _ in range(40):
        now += pace.delay(7, now)
        posts.append(now)
        now += 0.05  # Discord answers
        pace.record(7, now)
    assert all(later - earlier >= 5.0 for earlier, later in zip(posts, posts[5:], strict=False))
    assert posts[:5] == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2])


def test_a_minimum_interval_is_a_floor_between_two_posts() -> None:
    pace = ChannelPace(limit=5, per=5.0, min_interval=2.0)
    pace.record(1, 10.0)
    assert pace.delay(1, 10.5) == pytest.approx(1.5)


def test_the_floor_counts_from_when_a_post_was_sent_and_the_window_from_its_answer() -> None:
    pace = ChannelPace(limit=5, per=5.0, min_interval=1.0)
    # Four posts a second apart, each answered at once; the fifth emptied Discord's bucket, and the
    # client returned from it only when the bucket reset, 0.9 s later.
    for sent in (0.0, 1.0, 2.0, 3.0):
        pace.record(3, sent + 0.01, started=sent)
    pace.record(3, 4.91, started=4.0)
    assert pace.delay(3, 4.91) == pytest.approx(0.1)  # a second after the fifth was sent, not answered
    pace.record(3, 5.02, started=5.0)
    # The window: the sixth post's answer and the four before it.
    assert pace.delay(3, 5.02) == pytest.approx(6.01 - 5.02)
