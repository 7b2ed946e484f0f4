"""The parts of TestON one process can run, so one image runs any of them (`TESTON_ROLES`)."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    INGEST = "ingest"
    SINK = "sink"
    SCHEDULER = "scheduler"
    BOT = "bot"


def parse_roles(value: str) -> frozenset[Role]:
    """`ingest,sink` → the roles named; ValueError names an unknown one."""
    names = [part.strip().lower() for part in value.split(",") if part.strip()]
    known = {role.value for role in Role}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"unknown role {unknown[0]!r} (known: {', '.join(r.value for r in Role)})")
    if not names:
        raise ValueError("no role named")
    return frozenset(Role(name) for name in names)


def configured_roles(*, ingest_enabled: bool, bus_url: str | None, discord_token: bool) -> frozenset[Role]:
    """The default: every role whose configuration is there.

    With a bus, ingestion publishes and a sink stores; without one, ingestion writes directly and there is
    nothing for a sink to consume.
    """
    roles = {Role.SCHEDULER}
    if ingest_enabled:
        roles.add(Role.INGEST)
    if bus_url is not None:
        roles.add(Role.SINK)
    if discord_token:
        roles.add(Role.BOT)
    return frozenset(roles)


def missing_configuration(roles: frozenset[Role], *, bus_url: str | None, discord_token: bool) -> str | None:
    """Why the roles asked for cannot run (a sink without `BUS_URL`, a bot without a token), or None."""
    if Role.SINK in roles and bus_url is None:
        return "TESTON_ROLES names sink, which needs BUS_URL (the bus to consume)"
    if Role.BOT in roles and not discord_token:
        return "TESTON_ROLES names bot, which needs DISCORD_TOKEN"
    return None
