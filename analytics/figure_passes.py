"""A day's figures from its Parquet file in two passes, in memory that does not grow with the day.

Pass one reads the file a batch of rows at a time. The figures that add up (changes, edits, bytes,
changes per hour …) are computed per batch and summed. The few columns the per-page and per-editor
figures need are spilled to Arrow IPC files, one per hash shard of titles and one per hash shard of
user names. Pass two computes each shard's distinct counts and top tens from its two files alone: a
title or user name is in one shard with all its rows, so the shards' figures add up to the day's.

What is held at once is one batch of rows, or one shard's titles and user names: the number of shards
grows with the day. The figures equal `rollup.figures_of_day`'s over the same rows (tested).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from analytics import aggregates

# Rows read from the Parquet file at a time in pass one.
BATCH_ROWS = 128 * 1024
# The columns each pass reads: every figure's, and each spill's.
_FIGURE_COLUMNS = (
    "event_time",
    "wiki",
    "type",
    "bot",
    "user_name",
    "title",
    "namespace",
    "length_old",
    "length_new",
)
_SPILLS = {
    "title": ("event_time", "wiki", "type", "title", "namespace"),
    "user_name": ("event_time", "wiki", "type", "user_name", "bot"),
}


class _ShardFiles:
    """One Arrow IPC file per (spilled column, shard) in `directory`, appended to batch by batch."""

    def __init__(self, directory: Path, shards: int) -> None:
        self._directory = directory
        self.shards = shards
        self._writers: dict[tuple[str, int], pa.ipc.RecordBatchFileWriter] = {}

    def path(self, column: str, shard: int) -> Path:
        return self._directory / f"{column}-{shard}.arrow"

    def spill(self, rows: pl.DataFrame) -> None:
        """Append each row to the shard of its title and to the shard of its user name (if not null)."""
        for column, columns in _SPILLS.items():
            spilled = rows.select(columns).filter(pl.col(column).is_not_null())
            spilled = spilled.with_columns(
                aggregates.shard_of(column, self.shards).cast(pl.Int64).alias("_shard")
            )
            for (shard,), part in spilled.partition_by("_shard", as_dict=True).items():
                table = part.drop("_shard").to_arrow()
                key = (column, int(shard))
                writer = self._writers.get(key)
                if writer is None:
                    writer = pa.ipc.new_file(self.path(*key), table.schema)
                    self._writers[key] = writer
                writer.write_table(table)

    def rows(self, column: str, shard: int) -> pl.LazyFrame:
        """The spilled rows of `column`'s `shard` (none if no row went there)."""
        path = self.path(column, shard)
        if not path.exists():
            return pl.LazyFrame(schema={name: _SCHEMA[name] for name in _SPILLS[column]})
        return pl.scan_ipc(path)

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()


# The Polars types of the spilled columns (an empty shard is a frame of these).
_SCHEMA: dict[str, pl.DataType] = {
    "event_time": pl.Datetime("us", "UTC"),
    "wiki": pl.String(),
    "type": pl.String(),
    "title": pl.String(),
    "user_name": pl.String(),
    "namespace": pl.Int32(),
    "bot": pl.Boolean(),
}


@contextlib.contextmanager
def _shard_files(scratch_dir: Path | None, shards: int) -> Iterator[_ShardFiles]:
    with tempfile.TemporaryDirectory(dir=scratch_dir, prefix="teston-figures-") as directory:
        files = _ShardFiles(Path(directory), shards)
        try:
            yield files
        finally:
            files.close()


def figures_in_passes(
    path: Path, day: date, *, shards: int, scratch_dir: Path | None = None
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(wiki stats, top pages, top editors) of `day` from the Parquet file at `path`, in `shards` shards."""
    counts: list[pl.LazyFrame] = []
    hours: list[pl.LazyFrame] = []
    with _shard_files(scratch_dir, shards) as files:
        source = pq.ParquetFile(path)
        for batch in source.iter_batches(batch_size=BATCH_ROWS, columns=list(_FIGURE_COLUMNS)):
            frame = pl.DataFrame(batch)
            rows = aggregates.rows_of_day(frame.lazy(), day)
            batch_counts, batch_hours, day_rows = pl.collect_all(
                [aggregates.wiki_counts(rows), aggregates.hour_counts(rows), rows]
            )
            counts.append(batch_counts.lazy())
            hours.append(batch_hours.lazy())
            files.spill(day_rows)
            del frame, rows, day_rows
        files.close()
        distinct: list[pl.LazyFrame] = []
        shard_pages: list[pl.LazyFrame] = []
        shard_editors: list[pl.LazyFrame] = []
        for shard in range(shards):
            editor_rows, page_rows = files.rows("user_name", shard), files.rows("title", shard)
            shard_distinct, pages, editors = pl.collect_all(
                [
                    aggregates.distinct_counts_apart(editor_rows, page_rows, day),
                    aggregates.top_pages(page_rows, day),
                    aggregates.top_editors(editor_rows, day),
                ]
            )
            distinct.append(shard_distinct.lazy())
            shard_pages.append(pages.lazy())
            shard_editors.append(editors.lazy())
        # Every figure is passed in: no row is read from this frame.
        empty = pl.LazyFrame(schema={"event_time": _SCHEMA["event_time"], "wiki": pl.String()})
        stats, pages, editors = pl.collect_all(
            [
                aggregates.daily_wiki_stats(
                    empty,
                    day,
                    distinct=aggregates.sum_distinct_counts(distinct),
                    counts=aggregates.sum_wiki_counts(counts),
                    hours=aggregates.sum_hour_counts(hours),
                ),
                aggregates.merge_top_pages(shard_pages, day),
                aggregates.merge_top_editors(shard_editors, day),
            ]
        )
    return stats, pages, editors
