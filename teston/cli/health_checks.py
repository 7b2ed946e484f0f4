"""Whether a TestON process is healthy, judged by the roles it runs: the check behind `teston health`.

A container health check must work for every role, whatever the settings: probing the ingester's
`/healthz` would leave a scheduler, a bot, a sink, or `teston up` with `INGEST_ENABLED=false` or
`METRICS_PORT=0` unhealthy forever. So each role is checked for what it needs: all of them the database
(when it is a configured server; a check never starts the embedded one), an ingester and a sink also their
`/healthz`, where the settings serve one.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass

import psycopg

from teston.core.roles import Role
from teston.core.settings import Settings

# A health check has a few seconds in all (docker-compose.yml gives it 10 s).
CHECK_TIMEOUT = 3
# Addresses a server listens on that are no address to connect to.
_ANY_ADDRESS = frozenset({"0.0.0.0", "::", "", "*"})  # noqa: S104 (compared with, never bound)


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


def healthz_urls(settings: Settings, roles: frozenset[Role]) -> list[tuple[str, str]]:
    """The `/healthz` endpoints (name, URL) that a process running `roles` serves under `settings`."""
    ports = []
    if Role.INGEST in roles:
        ports.append(("ingester", settings.ingest.metrics_port))
    if Role.SINK in roles:
        ports.append(("sink", settings.bus.sink_metrics_port))
    host = settings.ingest.metrics_host
    host = "127.0.0.1" if host in _ANY_ADDRESS else host
    host = f"[{host}]" if ":" in host else host
    return [(name, f"http://{host}:{port}/healthz") for name, port in ports if port != 0]


def check_database(url: str) -> CheckResult:
    """Can a connection be opened and a statement run."""
    try:
        with psycopg.connect(url, connect_timeout=CHECK_TIMEOUT, application_name="teston-health") as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return CheckResult("database", False, f"cannot use PostgreSQL ({reason}); check DB_ADDR")
    return CheckResult("database", True, "reachable")


def check_healthz(name: str, url: str) -> CheckResult:
    """Does a `/healthz` answer 200."""
    try:
        # The URL is http://host:port/healthz, made by `healthz_urls` from the settings: no other scheme.
        with urllib.request.urlopen(url, timeout=CHECK_TIMEOUT) as response:  # noqa: S310
            response.read()
    except urllib.error.HTTPError as exc:
        return CheckResult(name, False, f"{url} answered {exc.code}: {_status_of(exc.read())}")
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        port = "SINK_METRICS_PORT" if name == "sink" else "METRICS_PORT"
        return CheckResult(name, False, f"nothing answers at {url} ({reason}); check {port} / METRICS_HOST")
    return CheckResult(name, True, f"{url} ok")


def _status_of(body: bytes) -> str:
    try:
        document = json.loads(body)
    except ValueError:
        return body[:200].decode("utf-8", "replace")
    if not isinstance(document, dict):
        return str(document)[:200]
    return ", ".join(f"{key} {value}" for key, value in document.items())[:200]


def check(settings: Settings, roles: frozenset[Role]) -> list[CheckResult]:
    """Every check that applies to a process running `roles` under `settings`, in order."""
    results = []
    if settings.database.url:
        results.append(check_database(settings.database.url))
    results.extend(check_healthz(name, url) for name, url in healthz_urls(settings, roles))
    return results
