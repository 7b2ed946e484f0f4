"""The `/metrics` and `/healthz` endpoint every long-running TestON process serves, one per process.

The composition root builds one `CollectorRegistry` per process, hands it to each component's metrics
(ingestion, scheduler, bot) and serves it here. Metrics never live in prometheus_client's global
registry, so two components (or two tests) in one process do not collide.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from teston.core.errors import TestonError

log = logging.getLogger(__name__)

Health = Callable[[], tuple[bool, dict[str, Any]]]


def always_healthy() -> tuple[bool, dict[str, Any]]:
    """The health of a process with nothing to check beyond answering at all."""
    return True, {}


def all_healthy(checks: Sequence[tuple[str, Health]]) -> Health:
    """One health callback for a process: healthy when every named check is, with each one's details."""

    def health() -> tuple[bool, dict[str, Any]]:
        results = {name: check() for name, check in checks}
        details = {name: {"healthy": ok, **more} for name, (ok, more) in results.items()}
        return all(ok for ok, _ in results.values()), details

    return health


# The series each kind of metric family is exposed as (prometheus_client's text format).
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
}


def metric_names(registry: CollectorRegistry) -> set[str]:
    """Every series name the registry can expose, also for labelled metrics not yet observed."""
    return {
        family.name + suffix for family in registry.collect() for suffix in _SUFFIXES.get(family.type, ("",))
    }


class MetricsPortBusy(TestonError, OSError):
    """The metrics endpoint's address cannot be bound (another process listens there)."""


class MetricsServer:
    """Serves `/metrics` from a registry and `/healthz` from a health callback; port 0 means disabled.

    Also a `teston.core.runtime.Component`, so a process without ingestion serves its metrics the same way.
    """

    name = "metrics"

    def __init__(
        self,
        registry: CollectorRegistry,
        health: Health = always_healthy,
        *,
        host: str,
        port: int,
        variable: str = "METRICS_PORT",
    ) -> None:
        self.variable = variable  # the setting that chose the port, for the message when it is taken
        self._registry = registry
        self._health = health
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self._stopped = asyncio.Event()

    @property
    def enabled(self) -> bool:
        return self._port != 0

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self._registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        healthy, details = self._health()
        return web.Response(
            text=json.dumps({"status": "ok" if healthy else "unhealthy", **details}, default=str),
            status=200 if healthy else 503,
            content_type="application/json",
        )

    async def start(self) -> None:
        self._stopped.clear()
        if not self.enabled:
            return
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, self._host, self._port).start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise MetricsPortBusy(
                f"{self.variable} {self._port} on {self._host} cannot be used ({exc.strerror or exc}); stop"
                f" what listens there, or set {self.variable} to a free port (0 serves no metrics)"
            ) from exc
        log.info("metrics on http://%s:%d/metrics", self._host, self._port)

    async def wait(self) -> None:
        """Serve until stopped: the endpoint never ends by itself."""
        await self._stopped.wait()

    async def stop(self) -> None:
        self._stopped.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
