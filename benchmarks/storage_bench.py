"""Figure 6: bytes per event as received (JSON), in PostgreSQL (with the raw event) and in Parquet.

One day of synthetic events is loaded through the real ingest path, then exported by the real exporter
(`analytics.exports.export_day`). Raw JSON is the UTF-8 bytes of each event's JSON text as the stream
sends it (no SSE framing, no newline). PostgreSQL is the day's partition after ingest (heap, TOAST and
both indexes; not vacuumed, as it is between autovacuum runs). Parquet is the exporter's two datasets:
the typed columns, which analytics reads, and the raw JSON archive beside them.
"""

from __future__ import annotations

from datetime import date

import psycopg
from psycopg import sql

from benchmarks.harness import Context, Figure, ingest_file, write_lines
from benchmarks.synthetic import EventFactory
from teston.core.partitions import day_bounds, partition_name

DAY = date(2025, 5, 5)
TARGET_SHARE = 1 / 8


def run(context: Context) -> list[Figure]:
    size = context.size
    start, end = day_bounds(DAY)
    jsonl = context.workdir / "storage-day.jsonl"
    json_bytes = write_lines(
        jsonl, EventFactory(context.profile, seed=context.seed + 6).events(size.storage_events, start, end)
    )
    with context.postgres() as server:
        stored = ingest_file(server.url, jsonl)
        jsonl.unlink()
        with psycopg.connect(server.url) as conn:
            name = partition_name(DAY)
            row = conn.execute(
                """
                SELECT pg_total_relation_size(c.oid), pg_relation_size(c.oid),
                       coalesce(pg_total_relation_size(NULLIF(c.reltoastrelid, 0)), 0),
                       pg_indexes_size(c.oid)
                FROM pg_class c WHERE c.relname = %s
                """,
                (name,),
            ).fetchone()
            (raw_column,) = conn.execute(
                sql.SQL("SELECT avg(pg_column_size(raw)) FROM {}").format(sql.Identifier(name))
            ).fetchone() or (0,)
            conn.commit()  # the exporter opens its own snapshot on an idle connection
            from analytics.exports import export_day

            exported = export_day(conn, context.workdir / "exports", DAY)
    if row is None or stored == 0:
        raise RuntimeError("nothing was stored")
    total, heap, toast, indexes = (int(value) for value in row)
    per = {
        "json": json_bytes / stored,
        "postgres": total / stored,
        "postgres_heap": heap / stored,
        "postgres_toast": toast / stored,
        "postgres_indexes": indexes / stored,
        "raw_jsonb_column": float(raw_column or 0),
        "parquet_typed": exported.bytes / stored,
        "parquet_raw": (exported.raw_path.stat().st_size if exported.raw_path else 0) / stored,
    }
    typed_share = per["parquet_typed"] / per["json"]
    both_share = (per["parquet_typed"] + per["parquet_raw"]) / per["json"]
    return [
        Figure(
            number=6,
            what=f"storage per event ({stored:,} events of one day)",
            result=(
                f"JSON {per['json']:.0f} B; PostgreSQL {per['postgres']:.0f} B "
                f"(heap {per['postgres_heap']:.0f}, indexes {per['postgres_indexes']:.0f}, "
                f"TOAST {per['postgres_toast']:.0f}); Parquet typed {per['parquet_typed']:.0f} B "
                f"+ raw archive {per['parquet_raw']:.0f} B"
            ),
            baseline=f"raw JSON {per['json']:.0f} B/event",
            ratio=f"typed Parquet 1/{1 / typed_share:.1f}; typed + raw Parquet 1/{1 / both_share:.1f}; "
            f"PostgreSQL {per['postgres'] / per['json']:.2f}×",
            target="Parquet ≤ 1/8 of raw JSON",
            met=typed_share <= TARGET_SHARE,
            values={
                **{f"{key}_bytes_per_event": value for key, value in per.items()},
                "typed_share": typed_share,
                "typed_and_raw_share": both_share,
            },
            notes=(
                "The target is judged on the typed Parquet dataset that analytics reads; the raw JSON "
                f"archive exported beside it brings the Parquet total to 1/{1 / both_share:.1f} of the JSON"
                + (" (also within 1/8)." if both_share <= TARGET_SHARE else ", which is not within 1/8.")
            ),
        )
    ]
