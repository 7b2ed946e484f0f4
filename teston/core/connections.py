"""How `DB_MAX_OPEN_CONNS` is shared out among the parts one TestON process runs.

Each part needs one connection at least: the ingester writes on one connection (with a bus, its
quarantine and cursor), so does a bus sink, a scheduled job runs on one, the bot answers on its pool.
The shares together never exceed `DB_MAX_OPEN_CONNS`; a value below one per running part is refused
at start with the minimum, rather than silently exceeded.
"""

from __future__ import annotations

from dataclasses import dataclass

from teston.core.errors import ConfigurationError

# The ingester's (or a sink's) writer holds one connection (reopened after an outage, never two at once).
INGESTION_CONNECTIONS = 1
# The schedule runs at most two jobs at once (a long nightly export beside the intraday refresh).
MAX_ANALYTICS_CONNECTIONS = 2


class TooFewConnections(ConfigurationError, ValueError):
    """`DB_MAX_OPEN_CONNS` is below one connection per part that is to run."""


@dataclass(frozen=True)
class ConnectionBudget:
    """Connections each part may open."""

    ingestion: int = 0
    sink: int = 0
    analytics: int = 0
    bot: int = 0

    @property
    def total(self) -> int:
        return self.ingestion + self.sink + self.analytics + self.bot


def share_connections(
    max_open_conns: int,
    *,
    ingestion: bool = False,
    sink: bool = False,
    analytics: bool = False,
    bot: bool = False,
) -> ConnectionBudget:
    """Each running part's connections, together at most `max_open_conns`.

    The ingester and a sink get one each; the schedule two fifths of the budget beside the bot (one
    or two jobs at once; two without the bot when the budget allows); the bot the rest.
    """
    parts = [
        name
        for name, running in (
            ("ingestion", ingestion),
            ("the bus sink", sink),
            ("the roll-up schedule", analytics),
            ("the Discord bot", bot),
        )
        if running
    ]
    if max_open_conns < len(parts):
        raise TooFewConnections(
            f"DB_MAX_OPEN_CONNS={max_open_conns} is too low: {', '.join(parts)} need one connection each,"
            f" so DB_MAX_OPEN_CONNS must be at least {len(parts)} (or run fewer parts: TESTON_ROLES,"
            " INGEST_ENABLED=false, no DISCORD_TOKEN)"
        )
    spare = max_open_conns - len(parts)
    ingestion_share = INGESTION_CONNECTIONS if ingestion else 0
    sink_share = INGESTION_CONNECTIONS if sink else 0
    analytics_share = 0
    if analytics:
        wanted = max(1, max_open_conns * 2 // 5) if bot else MAX_ANALYTICS_CONNECTIONS
        analytics_share = min(MAX_ANALYTICS_CONNECTIONS, wanted, 1 + spare)
    bot_share = max_open_conns - ingestion_share - sink_share - analytics_share if bot else 0
    return ConnectionBudget(
        ingestion=ingestion_share, sink=sink_share, analytics=analytics_share, bot=bot_share
    )
