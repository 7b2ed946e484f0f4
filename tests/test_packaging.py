"""The container packaging (docker-compose.yml, Dockerfile, .dockerignore) and `teston health`.

No Docker engine runs here, so the files are read as data: every TestON service runs one image built
once, and every long-running service has a health check that is a real `teston` command line.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from ingestion.metrics import MetricsServer
from teston.cli import app
from teston.cli.health_checks import healthz_urls
from teston.cli.service import up_roles
from teston.core.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
IMAGE = "teston:latest"


def compose_services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())[
        "services"
    ]
    return services


def runs_teston(service: dict[str, Any]) -> bool:
    return (
        service.get("image") == IMAGE or "build" in service or (service.get("command") or [""])[0] == "teston"
    )


def parse_teston_command(arguments: list[str]) -> Any:
    """Parse a `teston …` command line as the CLI would, without running it; fail if it is not one."""
    command: Any = typer.main.get_command(app)
    path, rest = ["teston"], list(arguments)
    while hasattr(command, "list_commands") and rest:  # a group: descend into the command named
        name = rest.pop(0)
        assert name in command.list_commands(None), f"teston has no command {' '.join([*path, name])!r}"
        command = command.get_command(None, name)
        path.append(name)
    return command.make_context(" ".join(path), rest)


def test_every_teston_service_runs_the_one_image_built_once() -> None:
    services = compose_services()
    teston = {name: service for name, service in services.items() if runs_teston(service)}
    assert {"migrate", "teston"} <= teston.keys()
    assert {service["image"] for service in teston.values()} == {IMAGE}
    built = [name for name, service in services.items() if "build" in service]
    assert built == ["migrate"]
    # The others must not try to pull a local image from a registry.
    assert all(teston[name]["pull_policy"] == "never" for name in teston.keys() - set(built))
    for name, service in teston.items():
        command = service["command"]
        assert command[0] == "teston", name
        parse_teston_command(command[1:])


def test_every_long_running_teston_service_has_a_health_check_that_is_a_teston_command() -> None:
    checked = []
    for name, service in compose_services().items():
        if not runs_teston(service) or service.get("restart") == "no":
            continue  # another program's service, or a one-shot job (migrations)
        check = service.get("healthcheck")
        assert check, name
        assert not check.get("disable"), name
        assert check.get("test"), name
        kind, *arguments = check["test"]
        assert kind == "CMD", name
        assert arguments[:2] == ["teston", "health"], name
        parse_teston_command(arguments[1:])
        checked.append(name)
    assert {"teston", "ingester", "sink", "scheduler", "bot-0", "bot-1"} <= set(checked)


_INTERPOLATED = re.compile(r"\$\{(\w+):-([^}]*)\}")


@pytest.mark.parametrize(
    ("name", "probed"),
    [
        ("teston", [("ingester", "http://127.0.0.1:9464/healthz")]),
        ("ingester", [("ingester", "http://127.0.0.1:9464/healthz")]),
        ("sink", [("sink", "http://127.0.0.1:9465/healthz")]),
        ("scheduler", []),
        ("bot-0", []),
    ],
)
def test_each_services_health_check_probes_what_that_service_runs(
    name: str, probed: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    service = compose_services()[name]
    # The container's environment: the image's, then the service's (with compose's `${VAR:-default}`).
    environment = {"TESTON_HOME": "/var/lib/teston", "METRICS_HOST": "0.0.0.0"}
    environment |= {
        key: _INTERPOLATED.sub(r"\2", str(value)) for key, value in service["environment"].items()
    }
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    settings = load_settings(env_file=None)
    assert healthz_urls(settings, up_roles(settings)) == probed


def test_the_images_own_health_check_is_teston_health() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    check = re.search(r"^HEALTHCHECK .*?CMD (\[.*?\])$", dockerfile, re.MULTILINE | re.DOTALL)
    assert check
    arguments = json.loads(check.group(1))
    assert arguments[:2] == ["teston", "health"]
    parse_teston_command(arguments[1:])
    assert "urlopen" not in dockerfile  # no probe of one role's endpoint


def test_the_build_context_leaves_out_secrets_and_everything_the_image_does_not_copy() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".env", ".git", ".venv", "tests", "notebooks", "benchmarks"} <= ignored
    copied = {
        part
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.startswith("COPY ")
        for part in line.split()[1:-1]
    }
    assert copied == {
        "pyproject.toml",
        "README.md",
        "alembic.ini",
        "teston",
        "ingestion",
        "analytics",
        "bot",
        "migrations",
    }
    assert not copied & ignored


# --- `teston health` --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def health(*arguments: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["health", *arguments])
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("arguments", "settings", "roles"),
    [
        ([], {"INGEST_ENABLED": "false"}, "scheduler"),
        ([], {"METRICS_PORT": "0"}, "ingest,scheduler"),
        ([], {"TESTON_ROLES": "scheduler,bot"}, "bot,scheduler"),
        (["--role", "ingest"], {"METRICS_PORT": "0"}, "ingest"),
        (["--role", "sink"], {"SINK_METRICS_PORT": "0"}, "sink"),
        (["--role", "scheduler"], {}, "scheduler"),
        (["--role", "bot"], {}, "bot"),
    ],
    ids=[
        "up-without-ingestion",
        "up-without-metrics",
        "up-as-scheduler-and-bot",
        "ingest-without-metrics",
        "sink-without-metrics",
        "scheduler",
        "bot",
    ],
)
def test_roles_that_serve_no_healthz_are_healthy_with_the_database(
    arguments: list[str], settings: dict[str, str], roles: str, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing listens on either metrics port: a check that probed a /healthz here would fail.
    monkeypatch.setenv("METRICS_PORT", str(free_port()))
    monkeypatch.setenv("SINK_METRICS_PORT", str(free_port()))
    for variable, value in {"DB_ADDR": db_url, **settings}.items():
        monkeypatch.setenv(variable, value)
    code, output = health(*arguments)
    assert (code, output) == (0, f"healthy ({roles}): database reachable\n")


@pytest.mark.parametrize(("role", "variable"), [("ingest", "METRICS_PORT"), ("sink", "SINK_METRICS_PORT")])
def test_a_healthz_that_does_not_answer_is_unhealthy_and_named(
    role: str, variable: str, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    monkeypatch.setenv("DB_ADDR", db_url)
    monkeypatch.setenv(variable, str(port))
    code, output = health("--role", role)
    assert code == 1
    name = "ingester" if role == "ingest" else "sink"
    assert output.startswith(f"unhealthy: {name}: nothing answers at http://127.0.0.1:{port}/healthz (")
    assert output.rstrip().endswith(f"check {variable} / METRICS_HOST")


async def test_an_ingester_is_as_healthy_as_its_healthz_says(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = {"healthy": True}
    port = free_port()
    server = MetricsServer(
        CollectorRegistry(),
        lambda: (state["healthy"], {"running": state["healthy"]}),
        host="0.0.0.0",
        port=port,
    )
    monkeypatch.setenv("DB_ADDR", db_url)
    monkeypatch.setenv("METRICS_PORT", str(port))
    monkeypatch.setenv("METRICS_HOST", "0.0.0.0")
    await server.start()
    try:
        # The check blocks; the server answers on this event loop meanwhile.
        healthy = await asyncio.to_thread(health, "--role", "ingest")
        state["healthy"] = False
        unhealthy = await asyncio.to_thread(health)  # `teston up`'s roles: ingest among them
    finally:
        await server.stop()
    assert healthy == (
        0,
        f"healthy (ingest): database reachable; ingester http://127.0.0.1:{port}/healthz ok\n",
    )
    assert unhealthy == (
        1,
        f"unhealthy: ingester: http://127.0.0.1:{port}/healthz answered 503: "
        "status unhealthy, running False\n",
    )


def test_an_unreachable_database_is_unhealthy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_ADDR", f"postgresql://teston:s3cret@127.0.0.1:{free_port()}/teston")
    monkeypatch.setenv("INGEST_ENABLED", "false")
    code, output = health()
    assert code == 1
    assert output.startswith("unhealthy: database: cannot use PostgreSQL (")
    assert output.rstrip().endswith("check DB_ADDR")
    assert "s3cret" not in output
