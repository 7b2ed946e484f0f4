"""Alembic environment: the schema comes from `teston.schema`, the server from TestON's settings."""

from __future__ import annotations

import os

import psycopg
from alembic import context
from sqlalchemy import create_engine, pool

from teston.database import in_utc
from teston.schema import metadata

target_metadata = metadata


def _url() -> str:
    url = (
        context.config.attributes.get("teston_url")
        or os.environ.get("DB_ADDR")
        or os.environ.get("DATABASE_URL")
    )
    if not url:
        raise SystemExit("set DB_ADDR or DATABASE_URL, or run `teston db upgrade` to use the embedded server")
    return in_utc(str(url))


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
