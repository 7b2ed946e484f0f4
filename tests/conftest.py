"""Shared fixtures: a real PostgreSQL server started by the suite, and a fresh database per test."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pydantic import AliasChoices

from teston.core import database
from teston.core.embedded import EmbeddedPostgres
from teston.core.settings import (
    AnalyticsSettings,
    BusSettings,
    DatabaseSettings,
    DiscordSettings,
    IngestSettings,
    Settings,
)

pytest_plugins = ["tests.fakediscord.pytest_plugin", "tests.bus_fixtures"]

DATA_DIR = Path(__file__).parent / "data"
TEMPLATE_DB = "teston_template"
# Durability is not under test here; without fsync the suite runs several times faster.
TEST_SERVER_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}

_counter = itertools.count()


def with_database(url: str, name: str) -> str:
    params = conninfo_to_dict(url)
    params["dbname"] = name
    return make_conninfo(**{k: str(v) for k, v in params.items() if v is not None})


class ExternalServer:
    """A server the developer named with TESTON_TEST_DATABASE_URL (needs the CREATEDB privilege)."""

    def __init__(self, url: str) -> None:
        self.url = url


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres | ExternalServer]:
    """One real PostgreSQL server for the whole run, or the one `TESTON_TEST_DATABASE_URL` names."""
    external = os.environ.get("TESTON_TEST_DATABASE_URL")
    if external:
        yield ExternalServer(external)
        return
    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg"), settings=TEST_SERVER_SETTINGS)
    server.start()
    yield server
    server.stop(mode="immediate")


@pytest.fixture(scope="session")
def template_url(pg_server: EmbeddedPostgres | ExternalServer) -> str:
    """A database migrated to head once, cloned for each test."""
    admin = with_database(pg_server.url, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE_DB}")
        conn.execute(f"CREATE DATABASE {TEMPLATE_DB}")
    url = with_database(pg_server.url, TEMPLATE_DB)
    database.upgrade(url)
    return url


@pytest.fixture
def db_url(pg_server: EmbeddedPostgres | ExternalServer, template_url: str) -> Iterator[str]:
    """The URL of a fresh, fully migrated database of the suite's server."""
    name = f"t_{os.getpid()}_{next(_counter)}"
    admin = with_database(pg_server.url, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
    yield with_database(pg_server.url, name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url) as connection:
        yield connection


def _setting_variables() -> set[str]:
    names = set()
    for group in (
        Settings,
        DatabaseSettings,
        DiscordSettings,
        IngestSettings,
        AnalyticsSettings,
        BusSettings,
    ):
        for info in group.model_fields.values():
            alias = info.validation_alias
            if isinstance(alias, AliasChoices):
                names.update(str(choice) for choice in alias.choices)
            elif isinstance(alias, str):
                names.add(alias)
    return names


SETTING_VARIABLES = frozenset(_setting_variables())


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the developer's environment or `.env`, or writes to their TestON home."""
    for variable in SETTING_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("TESTON_HOME", str(tmp_path / "teston-home"))
    # Settings read `.env` from the working directory; the tests' own is empty.
    workdir = tmp_path / "cwd"
    workdir.mkdir(exist_ok=True)
    monkeypatch.chdir(workdir)
