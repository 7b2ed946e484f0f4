"""TestON's Grafana dashboard, kept as code with grafanalib.

`python deploy/grafana/dashboard.py` writes `deploy/grafana/dashboards/teston.json`, which Grafana loads
through the provisioning files beside it (the `monitoring` profile of docker-compose.yml). The suite
regenerates the JSON and compares it with the committed file, and checks every panel's PromQL with
promtool, so edit this module and regenerate rather than editing the JSON.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from grafanalib._gen import DashboardEncoder
from grafanalib.core import Dashboard, GridPos, RowPanel, Stat, Target, Time, TimeSeries

OUTPUT = Path(__file__).parent / "dashboards" / "teston.json"
# The uid of the datasource in provisioning/datasources/prometheus.yml.
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
WIDTH, HEIGHT = 8, 8


@dataclass(frozen=True)
class Query:
    """One PromQL expression of a panel and the legend of its series."""

    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    """A panel: a time series unless `stat`, with its unit (a Grafana unit id)."""

    title: str
    queries: tuple[Query, ...]
    unit: str = "short"
    description: str = ""
    stat: bool = False


def quantile(q: float, histogram: str, *, by: str = "", window: str = "5m") -> str:
    """PromQL for the `q` quantile of a histogram over all instances (per `by` label if given)."""
    labels = f"{by}, le" if by else "le"
    return f"histogram_quantile({q}, sum by ({labels}) (rate({histogram}_bucket[{window}])))"


ROWS: tuple[tuple[str, tuple[Panel, ...]], ...] = (
    (
        "Ingestion",
        (
            Panel(
                "Events stored per second, by type",
                (Query("sum by (type) (rate(teston_ingest_events_total[5m]))", "{{type}}"),),
                "ops",
            ),
            Panel(
                "Event lag on arrival",
                (
                    Query(
                        quantile(0.5, "teston_ingest_event_lag_seconds"),
                        "p50",
                    ),
                    Query(
                        quantile(0.99, "teston_ingest_event_lag_seconds"),
                        "p99",
                    ),
                ),
                "s",
                "Now minus the event's own time when it arrives; alert above 60 s at the median.",
            ),
            Panel(
                "Newest stored event",
                (Query("time() - max(teston_ingest_last_event_timestamp_seconds)", "age"),),
                "s",
                "How old the newest committed event is: a stalled stream shows here first.",
                stat=True,
            ),
            Panel(
                "Inserted, duplicate, quarantined and canary events per second",
                (
                    Query("sum(rate(teston_ingest_inserted_events_total[5m]))", "inserted"),
                    Query("sum(rate(teston_ingest_duplicate_events_total[5m]))", "duplicate"),
                    Query("sum(rate(teston_ingest_rejected_events_total[5m]))", "quarantined"),
                    Query("sum(rate(teston_ingest_canary_events_total[5m]))", "canary"),
                ),
                "ops",
            ),
            Panel(
                "Batch commit time",
                (
                    Query(
                        quantile(0.99, "teston_ingest_batch_commit_seconds"),
                        "p99",
                    ),
                ),
                "s",
            ),
            Panel(
                "Reconnects, database outages and gaps per hour",
                (
                    Query(
                        "sum by (reason) (increase(teston_ingest_reconnects_total[1h]))",
                        "reconnect: {{reason}}",
                    ),
                    Query("sum(increase(teston_ingest_database_outages_total[1h]))", "database outage"),
                    Query("sum(increase(teston_ingest_gaps_total[1h]))", "gap"),
                ),
            ),
            Panel(
                "Busiest wikis",
                (Query("topk(10, sum by (wiki) (rate(teston_ingest_events_total[5m])))", "{{wiki}}"),),
                "ops",
            ),
        ),
    ),
    (
        "Roll-ups",
        (
            Panel(
                "Job runs per hour, by outcome",
                (
                    Query(
                        "sum by (kind, status) (increase(teston_job_runs_total[1h]))", "{{kind}} {{status}}"
                    ),
                ),
            ),
            Panel(
                "Job duration (p90 over an hour)",
                (
                    Query(
                        quantile(0.9, "teston_job_duration_seconds", by="kind", window="1h"),
                        "{{kind}}",
                    ),
                ),
                "s",
            ),
            Panel(
                "Since the last successful run",
                (
                    Query(
                        "time() - max by (kind) (teston_job_last_success_timestamp_seconds > 0)",
                        "{{kind}}",
                    ),
                ),
                "s",
                stat=True,
            ),
            Panel(
                "Newest final day",
                (Query("max(teston_rollup_newest_final_day_timestamp_seconds) * 1000", "day"),),
                "dateTimeAsIso",
                "The latest UTC day whose figures are final (exported to Parquet and verified).",
                stat=True,
            ),
            Panel(
                "Days behind: newest final day to today",
                (Query("max(teston_rollup_final_day_lag_days)", "days"),),
                description="1 once yesterday is final (nightly job, 00:15 UTC); alert above 1 after 02:00.",
                stat=True,
            ),
        ),
    ),
    (
        "Discord bot",
        (
            Panel(
                "Gateway connected",
                (Query("min(teston_bot_gateway_connected)", "connected"),),
                description="1 while the bot is on Discord's gateway; alert after 5 minutes at 0.",
                stat=True,
            ),
            Panel(
                "Commands per minute, by command and outcome",
                (
                    Query(
                        "sum by (command, outcome) (rate(teston_bot_commands_total[5m])) * 60",
                        "{{command}} {{outcome}}",
                    ),
                ),
            ),
            Panel(
                "Command latency",
                (
                    Query(
                        quantile(0.5, "teston_bot_command_latency_seconds"),
                        "p50",
                    ),
                    Query(
                        quantile(0.99, "teston_bot_command_latency_seconds"),
                        "p99",
                    ),
                ),
                "s",
            ),
            Panel(
                "Servers and gateway drops per hour",
                (
                    Query("max(teston_bot_guilds)", "servers"),
                    Query("sum(increase(teston_bot_gateway_disconnects_total[1h]))", "disconnects"),
                ),
            ),
            Panel(
                "Feed posts per minute and backlog",
                (
                    Query(
                        "sum by (outcome) (rate(teston_bot_feed_posts_total[5m])) * 60", "posted {{outcome}}"
                    ),
                    Query("sum(teston_bot_feed_backlog)", "backlog"),
                ),
            ),
            Panel(
                "!recent and !stats answers per second, by how served",
                (
                    Query("sum by (kind, served) (rate(teston_bot_reads_total[5m]))", "{{kind}} {{served}}"),
                    Query("sum(teston_bot_kept_answers)", "kept now"),
                    Query("min(teston_bot_notices_following)", "following notices (1 = yes)"),
                ),
            ),
        ),
    ),
    (
        "Event bus",
        (
            Panel(
                "Messages waiting on the bus",
                (Query("max(teston_bus_pending_messages)", "waiting"),),
                description="Not yet delivered to a sink, as of each sink's last fetch.",
            ),
            Panel(
                "Oldest waiting message, by sink",
                (Query("max by (instance) (teston_bus_oldest_pending_age_seconds)", "{{instance}}"),),
                "s",
                "Alert above 2 minutes for 5 minutes.",
            ),
            Panel(
                "Sink: messages received and events stored per second",
                (
                    Query("sum(rate(teston_sink_received_messages_total[5m]))", "received"),
                    Query("sum(rate(teston_sink_inserted_events_total[5m]))", "inserted"),
                    Query("sum(rate(teston_sink_duplicate_events_total[5m]))", "duplicate"),
                    Query("sum(rate(teston_sink_rejected_events_total[5m]))", "quarantined"),
                ),
                "ops",
            ),
        ),
    ),
    (
        "Processes",
        (
            Panel(
                "Scraped processes up",
                (Query('up{job="teston"}', "{{instance}} ({{role}})"),),
            ),
        ),
    ),
)


def expressions() -> list[str]:
    """Every PromQL expression of the dashboard, in panel order."""
    return [query.expr for _, panels in ROWS for panel in panels for query in panel.queries]


def _panel(panel: Panel, position: GridPos) -> TimeSeries | Stat:
    targets = [
        Target(expr=query.expr, legendFormat=query.legend, refId=chr(ord("A") + index), datasource=DATASOURCE)
        for index, query in enumerate(panel.queries)
    ]
    if panel.stat:
        return Stat(
            title=panel.title,
            description=panel.description or None,
            dataSource=DATASOURCE,
            targets=targets,
            format=panel.unit,
            reduceCalc="lastNotNull",
            gridPos=position,
        )
    return TimeSeries(
        title=panel.title,
        description=panel.description or None,
        dataSource=DATASOURCE,
        targets=targets,
        unit=panel.unit,
        gridPos=position,
    )


def dashboard() -> Dashboard:
    """The dashboard: one row per role, three panels across."""
    panels: list[RowPanel | TimeSeries | Stat] = []
    y = 0
    for title, row in ROWS:
        panels.append(RowPanel(title=title, gridPos=GridPos(h=1, w=24, x=0, y=y)))
        y += 1
        for index, panel in enumerate(row):
            column = index % (24 // WIDTH)
            if index and column == 0:
                y += HEIGHT
            panels.append(_panel(panel, GridPos(h=HEIGHT, w=WIDTH, x=column * WIDTH, y=y)))
        y += HEIGHT
    return Dashboard(
        title="TestON",
        uid="teston",
        description="Wikipedia's recent changes → PostgreSQL → roll-ups → Discord: every role's health.",
        tags=["teston"],
        timezone="utc",
        time=Time("now-6h", "now"),
        refresh="30s",
        panels=panels,
    ).auto_panel_ids()


def dashboard_json() -> str:
    """The dashboard as Grafana's JSON, as committed in `dashboards/teston.json`."""
    return json.dumps(dashboard().to_json_data(), cls=DashboardEncoder, indent=2, sort_keys=True) + "\n"


def main() -> None:
    """Write the dashboard JSON (or to the path given as the only argument)."""
    output = Path(sys.argv[1]) if len(sys.argv) > 1 else OUTPUT
    output.write_text(dashboard_json(), encoding="utf-8")


if __name__ == "__main__":
    main()
