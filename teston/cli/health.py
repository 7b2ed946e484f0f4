"""`teston health`: the container health check of every role, one line and an exit status."""

from __future__ import annotations

from typing import Annotated

import typer

from teston.cli.common import read_settings
from teston.cli.health_checks import check
from teston.cli.service import up_roles
from teston.core.roles import Role


def health(
    roles: Annotated[
        list[Role] | None,
        typer.Option(
            "--role",
            help="A role the checked process runs (repeat for several; default: what `teston up` runs "
            "under these settings, TESTON_ROLES or every configured one).",
        ),
    ] = None,
) -> None:
    """Exit 0 if the process is healthy under the current settings, else 1, with one line.

    Every role needs the database (DB_ADDR); an ingester also its /healthz (METRICS_PORT) and a sink its
    own (SINK_METRICS_PORT), unless that port is 0. For `teston ingest`, `sink`, `scheduler` or `bot`,
    name the role: `teston health --role sink`.
    """
    settings = read_settings()
    checked_roles = frozenset(roles) if roles else up_roles(settings)
    results = check(settings, checked_roles)
    failed = [result for result in results if not result.ok]
    if failed:
        typer.echo("unhealthy: " + "; ".join(f"{r.name}: {r.detail}" for r in failed), err=True)
        raise typer.Exit(1)
    names = ",".join(sorted(role.value for role in checked_roles))
    checked = "; ".join(f"{r.name} {r.detail}" for r in results) or "nothing to check in these settings"
    typer.echo(f"healthy ({names}): {checked}")
