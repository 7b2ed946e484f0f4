"""Alembic environment: the schema comes from `teston.core.schema`, the server from TestON's settings."""

from __future__ import annotations

import psycopg
from alembic import context
from sqlalchemy import create_engine, pool

from teston.core.database import in_utc
from teston.core.schema import metadata
from teston.core.settings import SettingsError, load_settings

target_metadata = metadata


def _url() -> str:
    """The URL `teston db upgrade` passes in; run standalone (`alembic upgrade head`), the configured one."""
    given = context.config.attributes.get("teston_url")
    if given:
        return in_utc(str(given))
    # Standalone, the server is the one TestON's settings name (DB_ADDR / DATABASE_URL, environment or .env).
    try:
        settings = load_settings()
    except SettingsError as exc:
        raise SystemExit(f"teston: {exc}") from None
    if not settings.database.url:
        raise SystemExit("set DB_ADDR or DATABASE_URL, or run `teston db upgrade` to use the embedded server")
    return in_utc(settings.database.url)


def run_migrations_offline() -> None:
    context.configure(url="postgresql+psycopg://", target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = _url()
    # A creator accepts both URL and key=value conninfo, exactly as psycopg does everywhere else.
    engine = create_engine(
        "postgresql+psycopg://", creator=lambda: psycopg.connect(url), poolclass=pool.NullPool
    )
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
