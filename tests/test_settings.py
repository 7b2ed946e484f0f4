from datetime import time, timedelta
from pathlib import Path

import pytest

from teston.core.settings import SettingsError, load_settings, parse_duration

GO_BOT_ENV = """\
DISCORD_TOKEN=abc.def.ghi
DB_ADDR=postgres://bot:secret@db.example:5432/wiki?sslmode=disable
DB_MAX_OPEN_CONNS=25
DB_MAX_IDLE_CONNS=5
DB_MAX_IDLE_TIME=15m
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("15m", timedelta(minutes=15)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("90s", timedelta(seconds=90)),
        ("1.5h", timedelta(minutes=90)),
        ("250ms", timedelta(milliseconds=250)),
        ("300", timedelta(seconds=300)),
    ],
)
def test_go_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["m", "15 m", "15x", "1h30", "-5m", "h1"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_a_go_bot_env_file_works_unchanged(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text(GO_BOT_ENV)
    settings = load_settings(env)
    assert settings.discord.token is not None
    assert settings.discord.token.get_secret_value() == "abc.def.ghi"
    assert "abc.def" not in repr(settings)  # the token never shows in logs
    assert settings.database.url == "postgres://bot:secret@db.example:5432/wiki?sslmode=disable"
    assert settings.database.max_open_conns == 25
    assert settings.database.max_idle_conns == 5
    assert settings.database.max_idle_time == timedelta(minutes=15)


def test_database_url_is_an_alias(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://x@y/z")
    assert load_settings(None).database.url == "postgresql://x@y/z"


def test_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESTON_HOME", str(tmp_path))
    settings = load_settings(None)
    assert settings.database.url is None  # the embedded server
    assert settings.home == tmp_path
    assert settings.export_dir == tmp_path / "exports"
    assert settings.embedded_data_dir == tmp_path / "postgres"
    assert settings.analytics.retention_days == 30
    assert settings.analytics.nightly_at == time(0, 15)
    assert settings.analytics.intraday_interval == timedelta(minutes=5)
    assert (settings.analytics.rollup_engine, settings.analytics.spark_master) == ("duckdb", "local[2]")
    assert settings.analytics.spark_driver_memory == "2g"
    assert settings.ingest.user_agent_product.startswith("TestON/")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DB_MAX_OPEN_CONNS", "lots"),
        ("DB_MAX_OPEN_CONNS", "0"),
        ("DB_MAX_IDLE_TIME", "soon"),
        ("RETENTION_DAYS", "-1"),
        ("NIGHTLY_AT", "25:00"),
        ("LOG_LEVEL", "chatty"),
        ("METRICS_PORT", "70000"),
        ("ROLLUP_INTERVAL", "0s"),
        ("SPARK_DRIVER_MEMORY", "lots"),
        ("ROLLUP_ENGINE", "hadoop"),
        ("INGEST_FLUSH_INTERVAL", "0"),
        ("DB_ADDR", "notaurl"),
        ("STREAM_URL", "notaurl"),
        ("STREAM_URL", "events.jsonl"),
        ("TESTON_HOME", "/etc/hostname/teston"),
    ],
)
def test_a_wrong_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as error:
        load_settings(None)
    assert f"{variable}:" in str(error.value) or f"{variable} / " in str(error.value)
    assert repr(value) in str(error.value)
