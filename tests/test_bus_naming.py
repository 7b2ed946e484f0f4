"""The bus's pure parts: `BUS_URL` parsing, subject names, replicas, roles and the `BUS_*` settings
(`tests/test_bus_grouping.py`: the messages a batch's rows become)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from typer.testing import CliRunner

from ingestion.bus.naming import (
    message_source,
    stream_replicas,
    subject_for,
    subject_token,
)
from teston.cli import app
from teston.core.bus_address import BusAddress, BusEngine, parse_bus_url
from teston.core.roles import Role, configured_roles, missing_configuration, parse_roles
from teston.core.settings import SettingsError, load_settings


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("nats://h1:4222", BusAddress(BusEngine.NATS, ("nats://h1:4222",))),
        (
            "nats://h1:4222,nats://h2:4222, nats://h3:4222",
            BusAddress(BusEngine.NATS, ("nats://h1:4222", "nats://h2:4222", "nats://h3:4222")),
        ),
        ("NATS://h1:4222,h2:4223", BusAddress(BusEngine.NATS, ("nats://h1:4222", "nats://h2:4223"))),
        ("kafka://h1:9092,h2:9092", BusAddress(BusEngine.KAFKA, ("h1:9092", "h2:9092"))),
        ("kafka://10.0.0.1:9092/", BusAddress(BusEngine.KAFKA, ("10.0.0.1:9092",))),
        ("kafka://[::1]:9092", BusAddress(BusEngine.KAFKA, ("[::1]:9092",))),
    ],
)
def test_bus_urls_name_the_engine_and_its_servers(url: str, expected: BusAddress) -> None:
    assert parse_bus_url(url) == expected


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("", "empty bus URL"),
        ("redis://h1:6379", "must start with nats:// or kafka://"),
        ("h1:4222", "must start with nats:// or kafka://"),
        ("nats://h1:4222,kafka://h2:9092", "same scheme"),
        ("nats://h1", "expected host:port"),
        ("kafka://h1:99999", "port out of range"),
    ],
)
def test_malformed_bus_urls_say_what_is_wrong(url: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        parse_bus_url(url)


def test_cluster_size_counts_distinct_servers() -> None:
    assert parse_bus_url("nats://a:1,nats://b:1,nats://a:1").cluster_size == 2


@pytest.mark.parametrize(("size", "replicas"), [(0, 1), (1, 1), (2, 2), (3, 3), (5, 3)])
def test_replicas_are_the_cluster_size_up_to_three(size: int, replicas: int) -> None:
    assert stream_replicas(size) == replicas


@pytest.mark.parametrize(
    ("wiki", "subject"),
    [
        ("enwiki", "teston.recentchange.enwiki"),
        ("zh_min_nanwiki", "teston.recentchange.zh_min_nanwiki"),
        ("be-taraskwiki", "teston.recentchange.be-taraskwiki"),
        ("a.b c*>", "teston.recentchange.a_b_c__"),
        ("", "teston.recentchange._"),
    ],
)
def test_subjects_hold_the_wiki_as_one_safe_token(wiki: str, subject: str) -> None:
    assert subject_for(wiki) == subject
    assert "." not in subject_token(wiki)


def test_quarantine_sources_name_engine_place_and_position() -> None:
    assert message_source(BusEngine.NATS, "TESTON_RECENTCHANGE", 42) == "nats:TESTON_RECENTCHANGE#42"
    assert message_source(BusEngine.KAFKA, "teston.recentchange/2", 7) == "kafka:teston.recentchange/2#7"


def test_roles_parse_and_refuse_unknown_names() -> None:
    assert parse_roles(" ingest, SINK ,") == {Role.INGEST, Role.SINK}
    with pytest.raises(ValueError, match="unknown role 'feeds'"):
        parse_roles("ingest,feeds")
    with pytest.raises(ValueError, match="no role"):
        parse_roles(",")


def test_default_roles_are_those_configured() -> None:
    assert configured_roles(ingest_enabled=True, bus_url=None, discord_token=False) == {
        Role.INGEST,
        Role.SCHEDULER,
    }
    assert configured_roles(ingest_enabled=False, bus_url="nats://h:4222", discord_token=True) == {
        Role.SINK,
        Role.SCHEDULER,
        Role.BOT,
    }


def test_roles_without_their_configuration_are_refused() -> None:
    assert "BUS_URL" in (missing_configuration({Role.SINK}, bus_url=None, discord_token=True) or "")
    assert "DISCORD_TOKEN" in (missing_configuration({Role.BOT}, bus_url=None, discord_token=False) or "")
    assert missing_configuration({Role.INGEST, Role.SCHEDULER}, bus_url=None, discord_token=False) is None


def test_bus_settings_are_read_and_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(None)
    assert settings.bus.url is None
    assert settings.roles is None
    monkeypatch.setenv("BUS_URL", "nats://h1:4222,nats://h2:4222")
    monkeypatch.setenv("BUS_DUPLICATE_WINDOW", "5m")
    monkeypatch.setenv("BUS_MAX_AGE", "")
    monkeypatch.setenv("BUS_MAX_BYTES", "1000000")
    monkeypatch.setenv("TESTON_ROLES", "sink,scheduler")
    settings = load_settings(None)
    assert settings.bus.url == "nats://h1:4222,nats://h2:4222"
    assert settings.bus.duplicate_window == timedelta(minutes=5)
    assert settings.bus.max_age is None
    assert settings.bus.max_bytes == 1_000_000
    assert settings.roles == {Role.SINK, Role.SCHEDULER}

    monkeypatch.setenv("BUS_URL", "amqp://h1:5672")
    with pytest.raises(SettingsError, match=r"BUS_URL: .*nats:// or kafka://"):
        load_settings(None)
    monkeypatch.setenv("BUS_URL", "kafka://h1:9092")
    monkeypatch.setenv("TESTON_ROLES", "ingest,spark")
    with pytest.raises(SettingsError, match=r"TESTON_ROLES: .*unknown role 'spark'"):
        load_settings(None)


def test_up_refuses_a_role_without_its_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESTON_ROLES", "sink")
    result = CliRunner().invoke(app, ["up"])
    assert result.exit_code == 2
    assert "TESTON_ROLES names sink, which needs BUS_URL" in result.output
    monkeypatch.delenv("TESTON_ROLES")
    result = CliRunner().invoke(app, ["sink"])
    assert result.exit_code == 2
    assert "`teston sink` needs BUS_URL" in result.output
