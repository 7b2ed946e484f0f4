"""A day's Parquet files written beside their targets and put in place together, or not at all.

Each file is written to a hidden temporary name in its target's directory, fsynced and counted. The
typed and raw files of a day are then renamed over the old ones together: the old files are kept (as
hard links) until the new ones are verified and recorded, and put back if anything fails up to then,
so a failed export leaves the previous one whole, byte for byte.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from analytics import layout
from analytics.day_rows import RAW_SCHEMA, TYPED_SCHEMA
from analytics.memory import return_freed_memory
from teston.core.errors import AnalyticsError

log = logging.getLogger(__name__)

# Rows per row group: large enough for good compression and statistics, small enough that the rows
# waiting to be written stay a few tens of MB (row sizes: BENCHMARKS.md, "Storage").
TYPED_ROW_GROUP_ROWS = 256 * 1024
RAW_ROW_GROUP_ROWS = 32 * 1024
_ZSTD_LEVEL = 3
# Columns written without a dictionary or statistics (see `DayFileWriter`).
_UNIQUE_TEXT = frozenset({"raw"})

# How a finished temporary file is renamed over its target (`os.replace`; tests pass a failing one).
Replace = Callable[[Path, Path], None]


class ExportError(AnalyticsError):
    """An export could not be written or did not match PostgreSQL; the previous export is untouched."""


def parquet_rows(path: Path) -> int:
    """Row count from a Parquet footer (no data is read)."""
    return int(pq.ParquetFile(path).metadata.num_rows)


class DayFileWriter:
    """Writes batches to a temporary file beside `target`, in row groups of a fixed size."""

    def __init__(self, target: Path, schema: pa.Schema, row_group_rows: int) -> None:
        self.target = target
        target.parent.mkdir(parents=True, exist_ok=True)
        self.temporary = layout.temporary_path(target)
        self._schema = schema
        self._row_group_rows = row_group_rows
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self.rows = 0
        self._writer = pq.ParquetWriter(
            self.temporary,
            schema,
            compression="zstd",
            compression_level=_ZSTD_LEVEL,
            # The event's JSON never repeats and no reader filters on it: a dictionary attempt and
            # min/max statistics of kilobyte strings cost CPU (about a tenth of the raw file's) for nothing.
            use_dictionary=[name for name in schema.names if name not in _UNIQUE_TEXT],
            write_statistics=[name for name in schema.names if name not in _UNIQUE_TEXT],
        )
        # Row groups are encoded and compressed on a thread of their own (Arrow releases the GIL), so
        # the day keeps streaming in while one is written; at most one waits, which bounds memory.
        self._encoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"parquet-{target.stem}")
        self._in_flight: Future[None] | None = None

    def write(self, batch: pa.RecordBatch) -> None:
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        self.rows += batch.num_rows
        # Row-group boundaries depend only on the row count, so identical rows give identical bytes.
        while self._pending_rows >= self._row_group_rows:
            self._write_group(self._row_group_rows)

    def _write_group(self, rows: int) -> None:
        """Hand the first `rows` pending rows to the encoder thread as one row group."""
        # The previous group is written first: at most one group is held by the encoder at a time.
        self._wait()
        pending = pa.Table.from_batches(self._pending, schema=self._schema)
        # One contiguous chunk per column: page boundaries then depend on the rows alone, not on
        # how the CSV reader happened to split them into batches. The batches are let go at once.
        group = pending.slice(0, rows).combine_chunks()
        rest = pending.slice(rows)
        self._pending, self._pending_rows = rest.to_batches(), rest.num_rows
        del pending, rest
        self._in_flight = self._encoder.submit(self._encode, group)

    def _encode(self, group: pa.Table) -> None:
        self._writer.write_table(group, row_group_size=self._row_group_rows)

    def _wait(self) -> None:
        """Let the row group being written finish (and raise what it raised)."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            in_flight.result()
            # Its buffers go back to the system now rather than stay cached by Arrow's allocator
            # beside the next group's (about 45 MiB less at the peak, for no measurable time).
            pa.default_memory_pool().release_unused()

    def close(self) -> None:
        try:
            if self._pending_rows:
                self._write_group(self._pending_rows)
            self._pending = []
            self._wait()
        finally:
            self._encoder.shutdown()
        self._writer.close()
        with open(self.temporary, "rb+") as handle:
            os.fsync(handle.fileno())

    def discard(self) -> None:
        with contextlib.suppress(Exception):
            self._wait()
        self._encoder.shutdown()
        with contextlib.suppress(Exception):
            self._writer.close()
        self.temporary.unlink(missing_ok=True)


@contextlib.contextmanager
def day_writers(path: Path, raw_path: Path | None) -> Iterator[tuple[DayFileWriter, DayFileWriter | None]]:
    """The typed file's writer and, with `raw_path`, the raw one's; on any failure both are discarded."""
    typed = DayFileWriter(path, TYPED_SCHEMA, TYPED_ROW_GROUP_ROWS)
    raw = DayFileWriter(raw_path, RAW_SCHEMA, RAW_ROW_GROUP_ROWS) if raw_path else None
    try:
        yield typed, raw
    except BaseException:
        for writer in (typed, raw):
            if writer is not None:
                writer.discard()
        raise
    finally:
        # The row groups' and the read's buffers go back to the system rather than stay cached by the
        # allocators beside whatever the process does next (the figures, another day).
        return_freed_memory()


def _fsync_directory(directory: Path) -> None:
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def _keep_previous(target: Path) -> Path | None:
    """A second name for the file at `target` (a hard link, else a copy), to put back; None if none."""
    if not target.exists():
        return None
    kept = layout.kept_path(target)
    try:
        os.link(target, kept)
    except OSError:
        shutil.copy2(target, kept)
    return kept


def _put_back(renamed: list[tuple[DayFileWriter, Path | None]]) -> list[Path]:
    """Restore the files the writers replaced (remove new files that replaced nothing); copies left."""
    left: list[Path] = []
    for writer, previous in reversed(renamed):
        try:
            if previous is None:
                writer.target.unlink(missing_ok=True)
            else:
                os.replace(previous, writer.target)
        except OSError:
            log.exception("could not put %s back from %s", writer.target, previous)
            if previous is not None:
                left.append(previous)
    return left


@contextlib.contextmanager
def replaced_together(
    writers: tuple[DayFileWriter, DayFileWriter | None],
    expected: int,
    what: str,
    *,
    replace: Replace = os.replace,
) -> Iterator[None]:
    """Check each temporary file holds `expected` rows, rename them all into place, verify them there.

    The previous files are kept until the block ends; if anything fails before (a rename, the check
    after it, or the caller's work inside the block, such as recording the export), they are put back.
    """
    files = [writer for writer in writers if writer is not None]
    for writer in files:
        writer.close()
        on_disk = parquet_rows(writer.temporary)
        if writer.rows != expected or on_disk != expected:
            raise ExportError(
                f"{what}, {writer.rows} were written and {on_disk} are in {writer.temporary.name}"
            )
    renamed: list[tuple[DayFileWriter, Path | None]] = []
    left: list[Path] = []
    try:
        for writer in reversed(files):  # raw first: a typed file never points at a missing raw one
            renamed.append((writer, _keep_previous(writer.target)))
            replace(writer.temporary, writer.target)
            _fsync_directory(writer.target.parent)
        for writer in files:
            # Verified after the rename: the file readers will open is the one that was counted.
            if (on_disk := parquet_rows(writer.target)) != expected:
                raise ExportError(f"{what}, but {writer.target} holds {on_disk} after the rename")
        yield
    except BaseException as exc:
        left = _put_back(renamed)
        if left:
            raise ExportError(f"{what}: {exc}; the previous files could not all be put back: {left}") from exc
        if isinstance(exc, OSError | pa.ArrowException):
            raise ExportError(f"{what}: {exc}; the previous export was kept") from exc
        raise
    finally:
        for _writer, previous in renamed:
            if previous is not None and previous not in left:
                previous.unlink(missing_ok=True)
