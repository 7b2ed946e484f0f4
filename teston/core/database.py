"""Connections to PostgreSQL: which server (configured or embedded) and migrations to apply."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from alembic.config import Config
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from teston.core.embedded import EmbeddedPostgres
from teston.core.locks import MIGRATION_KEY
from teston.core.settings import Settings

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def redact(url: str) -> str:
    """The URL with any password replaced, safe for logs."""
    params = conninfo_to_dict(url)
    if params.get("password"):
        params["password"] = "***"  # noqa: S105 (the mask, no secret)
    return make_conninfo(**{k: str(v) for k, v in params.items() if v is not None})


# Every session works in UTC: timestamptz values then come back as UTC datetimes and text renders of
# them (COPY, `::text`, `::date`) are UTC, whatever `TimeZone` the server, database or role defaults to.
_UTC_OPTION = "-c TimeZone=UTC"


def in_utc(url: str) -> str:
    """The conninfo of `url` with its sessions set to UTC (any `options` it has are kept)."""
    options = conninfo_to_dict(url).get("options") or ""
    if _UTC_OPTION in str(options):
        return url
    return make_conninfo(url, options=f"{options} {_UTC_OPTION}".strip())


@contextlib.contextmanager
def database_url(settings: Settings) -> Iterator[str]:
    """Yield the URL of the configured server, or of the embedded one (started if needed)."""
    if settings.database.url:
        yield settings.database.url
        return
    with EmbeddedPostgres(settings.embedded_data_dir) as server:
        yield server.url


def _alembic_config(url: str) -> Config:

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["teston_url"] = in_utc(url)
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Apply migrations up to `revision`, one process at a time (the others then find the schema at head)."""
    import psycopg
    from alembic import command

    with psycopg.connect(url, autocommit=True) as lock:
        lock.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_KEY,))
        try:
            command.upgrade(_alembic_config(url), revision)
        finally:
            with contextlib.suppress(psycopg.Error):  # closing the connection releases it anyway
                lock.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_KEY,))


def downgrade(url: str, revision: str) -> None:
    from alembic import command

    command.downgrade(_alembic_config(url), revision)


def head_revision() -> str | None:
    """The newest migration this TestON ships."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


def current_revision(url: str) -> str | None:
    import psycopg

    with psycopg.connect(in_utc(url)) as conn:
        try:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        except psycopg.errors.UndefinedTable:
            return None
    return row[0] if row else None
