"""One typed settings object, read once from the environment and `.env` at start.

Variable names keep those of the original Go bot (`DISCORD_TOKEN`, `DB_ADDR`, `DB_MAX_*`) so an
existing `.env` works unchanged; every other variable is TestON's own.
"""

from __future__ import annotations

import os
import re
from datetime import time, timedelta
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import AliasChoices, Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from teston import __version__
from teston.core.bus_address import parse_bus_url
from teston.core.errors import ConfigurationError
from teston.core.redaction import redact
from teston.core.roles import Role, parse_roles

DEFAULT_STREAM_URL = "https://stream.wikimedia.org/v2/stream/recentchange"
DEFAULT_CONTACT = "https://github.com/teston-bot/teston"

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)")
_DURATION_UNITS = {
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 1e-3,
    "us": 1e-6,
    "µs": 1e-6,
    "ns": 1e-9,
}


class SettingsError(ConfigurationError, ValueError):
    """A setting is missing or malformed; the message names the environment variable."""


def parse_duration(value: str | int | float | timedelta) -> timedelta:
    """Parse a Go-style duration (`15m`, `1h30m`, `90s`) or a number of seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    text = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return timedelta(seconds=float(text))
    # Go's time.ParseDuration grammar: a sequence of decimal numbers, each with a unit suffix.
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"invalid duration {value!r} (expected e.g. 15m, 1h30m, 90s)")
    return timedelta(seconds=total)


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be longer than zero")
    return value


def _default_home() -> Path:
    return Path(platformdirs.user_data_dir("teston", appauthor=False))


def _alias(*names: str) -> Any:
    return AliasChoices(*names)


class _Group(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)


class DatabaseSettings(_Group):
    """Where PostgreSQL is and how many connections TestON may hold."""

    url: str | None = Field(default=None, validation_alias=_alias("DB_ADDR", "DATABASE_URL"))
    max_open_conns: int = Field(default=10, ge=1, le=1000, validation_alias="DB_MAX_OPEN_CONNS")
    max_idle_conns: int = Field(default=2, ge=0, le=1000, validation_alias="DB_MAX_IDLE_CONNS")
    max_idle_time: timedelta = Field(default=timedelta(minutes=15), validation_alias="DB_MAX_IDLE_TIME")

    @field_validator("url", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("url")
    @classmethod
    def _conninfo(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from psycopg.conninfo import conninfo_to_dict

        try:
            conninfo_to_dict(value)
        except Exception as exc:
            raise ValueError(
                "not a PostgreSQL URL (postgresql://user:password@host:5432/dbname) or key=value conninfo"
                f" ({str(exc).strip()})"
            ) from None
        return value

    @field_validator("max_idle_time", mode="before")
    @classmethod
    def _go_duration(cls, value: Any) -> timedelta:
        return parse_duration(value)


class DiscordSettings(_Group):
    """The Discord bot's credentials and behaviour."""

    token: SecretStr | None = Field(default=None, validation_alias="DISCORD_TOKEN")
    command_prefix: str = Field(default="!", min_length=1, max_length=5, validation_alias="COMMAND_PREFIX")
    # Guild to sync slash commands to immediately (global sync can take up to an hour to show).
    sync_guild_id: int | None = Field(default=None, validation_alias="DISCORD_SYNC_GUILD_ID")
    # Several bot processes split Discord's shards: each runs `SHARD_IDS` of `SHARD_COUNT` (unset: one
    # process, unsharded; a count alone: every shard in this process).
    shard_count: int | None = Field(default=None, ge=1, le=10_000, validation_alias="SHARD_COUNT")
    shard_ids: tuple[int, ...] | None = Field(default=None, validation_alias="SHARD_IDS")

    @field_validator("token", "shard_count", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("shard_ids", mode="before")
    @classmethod
    def _id_list(cls, value: Any) -> Any:
        if isinstance(value, int):
            return (value,)
        if not isinstance(value, str):
            return value
        if not value.strip():
            return None
        parts = [part.strip() for part in value.split(",")]
        if not all(re.fullmatch(r"\d+", part) for part in parts):
            raise ValueError("must be comma-separated shard numbers, e.g. 0,1")
        return tuple(int(part) for part in parts)

    @field_validator("shard_ids")
    @classmethod
    def _within_count(cls, value: tuple[int, ...] | None, info: ValidationInfo) -> tuple[int, ...] | None:
        if value is None:
            return None
        count = info.data.get("shard_count")
        if count is None:
            raise ValueError("needs SHARD_COUNT (the total number of shards across every bot process)")
        if not value:
            raise ValueError("must name at least one shard")
        outside = sorted({i for i in value if not 0 <= i < count})
        if outside:
            raise ValueError(f"shard {outside[0]} is outside 0..{count - 1} (SHARD_COUNT={count})")
        repeated = sorted({i for i in value if value.count(i) > 1})
        if repeated:
            raise ValueError(f"shard {repeated[0]} is listed more than once")
        return value


class IngestSettings(_Group):
    """The EventStreams source and how TestON identifies itself to it."""

    stream_url: str = Field(default=DEFAULT_STREAM_URL, validation_alias="STREAM_URL")
    contact: str = Field(default=DEFAULT_CONTACT, min_length=3, validation_alias="TESTON_CONTACT")
    batch_size: int = Field(default=2000, ge=1, le=100_000, validation_alias="INGEST_BATCH_SIZE")
    flush_interval: timedelta = Field(default=timedelta(seconds=1), validation_alias="INGEST_FLUSH_INTERVAL")
    metrics_port: int = Field(default=9464, ge=0, le=65535, validation_alias="METRICS_PORT")
    # Loopback by default; the container image sets 0.0.0.0 so Prometheus can scrape it.
    metrics_host: str = Field(default="127.0.0.1", min_length=1, validation_alias="METRICS_HOST")
    enabled: bool = Field(default=True, validation_alias="INGEST_ENABLED")

    @field_validator("flush_interval", mode="before")
    @classmethod
    def _go_duration(cls, value: Any) -> timedelta:
        return _positive(parse_duration(value))

    @field_validator("stream_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @property
    def user_agent_product(self) -> str:
        return f"TestON/{__version__} ({self.contact})"


class AnalyticsSettings(_Group):
    """Exports, roll-ups, retention and their schedule."""

    export_dir: Path | None = Field(default=None, validation_alias="EXPORT_DIR")
    retention_days: int = Field(default=30, ge=1, validation_alias="RETENTION_DAYS")
    intraday_interval: timedelta = Field(default=timedelta(minutes=5), validation_alias="ROLLUP_INTERVAL")
    nightly_at: time = Field(default=time(0, 15), validation_alias="NIGHTLY_AT")
    # A scheduled job runs in a child process; one still running after this long is killed and failed.
    job_timeout: timedelta = Field(default=timedelta(hours=2), validation_alias="JOB_TIMEOUT")
    # `duckdb`: in-process, each day in turn; `spark`: many days in one Spark job on `SPARK_MASTER`.
    rollup_engine: Literal["duckdb", "spark"] = Field(default="duckdb", validation_alias="ROLLUP_ENGINE")
    spark_master: str = Field(default="local[2]", min_length=1, validation_alias="SPARK_MASTER")
    # The Spark driver JVM's heap (`512m`, `2g`); in local mode the roll-up's tasks run in it too.
    spark_driver_memory: str = Field(
        default="2g", pattern=r"^[1-9][0-9]*[kmgt]?$", validation_alias="SPARK_DRIVER_MEMORY"
    )

    @field_validator("intraday_interval", "job_timeout", mode="before")
    @classmethod
    def _go_duration(cls, value: Any) -> timedelta:
        return _positive(parse_duration(value))


class BusSettings(_Group):
    """The durable event bus between the stream and PostgreSQL (unset `BUS_URL`: write directly)."""

    url: str | None = Field(default=None, validation_alias="BUS_URL")
    duplicate_window: timedelta = Field(default=timedelta(minutes=2), validation_alias="BUS_DUPLICATE_WINDOW")
    max_age: timedelta | None = Field(default=timedelta(days=7), validation_alias="BUS_MAX_AGE")
    max_bytes: int | None = Field(default=None, ge=1, validation_alias="BUS_MAX_BYTES")
    replicas: int | None = Field(default=None, ge=1, le=5, validation_alias="BUS_REPLICAS")
    partitions: int = Field(default=3, ge=1, le=1000, validation_alias="BUS_PARTITIONS")
    ack_wait: timedelta = Field(default=timedelta(seconds=30), validation_alias="BUS_ACK_WAIT")
    publish_timeout: timedelta = Field(default=timedelta(seconds=5), validation_alias="BUS_PUBLISH_TIMEOUT")
    sink_batch_size: int = Field(default=2000, ge=1, le=100_000, validation_alias="SINK_BATCH_SIZE")
    sink_metrics_port: int = Field(default=9465, ge=0, le=65535, validation_alias="SINK_METRICS_PORT")

    @field_validator("url", "max_bytes", "replicas", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("url")
    @classmethod
    def _bus_url(cls, value: str | None) -> str | None:
        if value is not None:
            parse_bus_url(value)
        return value

    @field_validator("duplicate_window", "ack_wait", "publish_timeout", mode="before")
    @classmethod
    def _go_duration(cls, value: Any) -> timedelta:
        return _positive(parse_duration(value))

    @field_validator("max_age", mode="before")
    @classmethod
    def _optional_duration(cls, value: Any) -> timedelta | None:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None  # no age limit
        return _positive(parse_duration(value))


class Settings(_Group):
    """Everything TestON reads from its environment, grouped by concern."""

    home: Path = Field(default_factory=_default_home, validation_alias="TESTON_HOME")
    log_level: str = Field(default="INFO", validation_alias="LOG_LEVEL")
    database: DatabaseSettings
    discord: DiscordSettings
    ingest: IngestSettings
    analytics: AnalyticsSettings
    bus: BusSettings
    # Which parts `teston up` runs (`ingest,sink,scheduler,bot`); unset: every part that is configured.
    roles: frozenset[Role] | None = Field(default=None, validation_alias="TESTON_ROLES")

    @field_validator("roles", mode="before")
    @classmethod
    def _role_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return parse_roles(value) if value.strip() else None
        return value

    @field_validator("home")
    @classmethod
    def _usable_home(cls, value: Path) -> Path:
        home = value.expanduser()
        existing = next((p for p in [home, *home.parents] if p.exists()), None)
        if existing is None or not existing.is_dir():
            raise ValueError(f"{existing} is not a directory")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise ValueError(f"{existing} is not writable")
        return home

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError(f"unknown log level {value!r}")
        return level

    @property
    def export_dir(self) -> Path:
        return self.analytics.export_dir or self.home / "exports"

    @property
    def embedded_data_dir(self) -> Path:
        return self.home / "postgres"


def _variable_of(error: dict[str, Any], group: type[BaseSettings]) -> str:
    field = str(error["loc"][0]) if error["loc"] else ""
    info = group.model_fields.get(field)
    alias = info.validation_alias if info else None
    if isinstance(alias, AliasChoices):
        return " / ".join(str(a) for a in alias.choices)
    return str(alias or field)


def _secret(variable: str) -> bool:
    return variable == "DISCORD_TOKEN"


def load_settings(env_file: str | Path | None = ".env") -> Settings:
    """Read and validate every setting; raise SettingsError naming the offending variable."""
    groups: dict[str, Any] = {}
    classes: dict[str, type[_Group]] = {
        "database": DatabaseSettings,
        "discord": DiscordSettings,
        "ingest": IngestSettings,
        "analytics": AnalyticsSettings,
        "bus": BusSettings,
    }
    try:
        for name, cls in classes.items():
            current = cls
            groups[name] = cls(_env_file=env_file)  # type: ignore[call-arg]
        current = Settings
        return Settings(_env_file=env_file, **groups)  # type: ignore[call-arg]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            variable = _variable_of(dict(err), current)
            given = err.get("input")
            shown = "" if isinstance(given, dict) or given is None else f" (got {given!r})"
            # A malformed DB_ADDR or DISCORD_TOKEN is still a secret: never echo a password or token.
            problems.append(
                redact(f"{variable}: {err['msg']}{shown}", [str(given)] if _secret(variable) else [])
            )
        raise SettingsError("invalid configuration: " + "; ".join(problems)) from None
