"""Pure ingestion policies: reconnect delays, failure classes, retention gaps, identification."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from ingestion.backoff import Failure, ReconnectPolicy, classify_status, parse_retry_after
from ingestion.client import since_parameter, user_agent
from ingestion.gaps import IngestGap, detect_gap
from tests.fakestream import USER_AGENT


@pytest.mark.parametrize(
    ("status", "failure"),
    [
        (200, None),
        (204, None),
        (429, Failure.THROTTLED),
        (500, Failure.SERVER_ERROR),
        (503, Failure.SERVER_ERROR),
        (408, Failure.SERVER_ERROR),
        (403, Failure.REFUSED),
        (404, Failure.REFUSED),
    ],
)
def test_statuses_are_classified(status: int, failure: Failure | None) -> None:
    assert classify_status(status) is failure


def test_delays_grow_exponentially_within_the_jitter_and_stop_at_the_maximum() -> None:
    policy = ReconnectPolicy(initial=1.0, maximum=30.0, multiplier=2.0, jitter=0.5)
    rng = random.Random(3)
    for attempt, nominal in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (6, 30.0), (20, 30.0)]:
        delays = [policy.delay(attempt, Failure.SERVER_ERROR, rng=rng) for _ in range(200)]
        assert all(nominal / 2 <= d <= nominal for d in delays), attempt
        assert max(delays) - min(delays) > nominal / 4  # actually jittered


def test_the_servers_retry_field_is_the_base_and_retry_after_a_floor() -> None:
    policy = ReconnectPolicy(initial=1.0, maximum=60.0, jitter=0.0)
    rng = random.Random(0)
    assert policy.delay(1, Failure.DISCONNECTED, retry_ms=250, rng=rng) == 0.25
    assert policy.delay(3, Failure.SERVER_ERROR, retry_ms=250, rng=rng) == 1.0
    assert policy.delay(1, Failure.THROTTLED, retry_after=7, rng=rng) == 7
    assert policy.delay(1, Failure.THROTTLED, retry_after=3600, rng=rng) == 60.0
    assert policy.delay(1, Failure.REFUSED, rng=rng) == 60.0


@pytest.mark.parametrize(("header", "seconds"), [("5", 5.0), (" 0 ", 0.0), (None, None), ("-1", None)])
def test_retry_after_in_seconds(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header) == seconds


def test_an_http_date_retry_after_falls_back_to_the_schedule() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None


def test_a_gap_is_a_jump_beyond_the_tolerance() -> None:
    stopped = datetime(2021, 8, 20, 12, 0, tzinfo=UTC)
    assert detect_gap("s", None, stopped) is None
    assert detect_gap("s", stopped, stopped - timedelta(minutes=3)) is None  # times go backwards
    assert detect_gap("s", stopped, stopped + timedelta(minutes=9)) is None
    later = stopped + timedelta(days=8)
    assert detect_gap("s", stopped, later) == IngestGap("s", stopped, later)


def test_the_user_agent_follows_wikimedias_policy() -> None:
    agent = user_agent("TestON/0.1.0 (https://example.org/contact)")
    assert agent == f"TestON/0.1.0 (https://example.org/contact) aiohttp/{aiohttp.__version__}"
    assert USER_AGENT.match(agent)


def test_since_is_sent_in_utc() -> None:
    moment = datetime(2021, 8, 27, 17, 20, tzinfo=ZoneInfo("Europe/Paris"))
    assert since_parameter(moment) == "2021-08-27T15:20:00Z"
