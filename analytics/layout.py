"""Where the daily Parquet exports live: the only module that builds a path inside the export directory.

Hive-partitioned, one file per day and dataset::

    <export_dir>/recent_changes/date=YYYY-MM-DD/part-0.parquet       typed columns (day_rows.TYPED_SCHEMA)
    <export_dir>/recent_changes_raw/date=YYYY-MM-DD/part-0.parquet   event_time, event_id, raw JSON

The raw JSON lives in its own dataset because it is several times larger than every typed column
together (BENCHMARKS.md, "Storage"): kept apart, readers that never look at `raw` never pay for it. Writers,
roll-ups, retention, the Spark engine and the notebooks all ask this module; `day_exports.path` holds
`relative_day_path(day)` but is never read back, so moving `EXPORT_DIR` moves the exports with it.
Files being written, and the old files kept until new ones are in place, have hidden names beside
their target (`temporary_path`, `kept_path`), which no dataset glob matches.
"""

from __future__ import annotations

import contextlib
import uuid
from datetime import date
from pathlib import Path

DATASET = "recent_changes"
RAW_DATASET = "recent_changes_raw"
PART_NAME = "part-0.parquet"
_PARTITION_PREFIX = "date="


def day_dir(export_dir: Path, day: date, *, dataset: str = DATASET) -> Path:
    """The partition directory of a day in a dataset."""
    return Path(export_dir) / dataset / f"{_PARTITION_PREFIX}{day.isoformat()}"


def day_path(export_dir: Path, day: date) -> Path:
    """The typed Parquet file of a day."""
    return day_dir(export_dir, day) / PART_NAME


def raw_day_path(export_dir: Path, day: date) -> Path:
    """The raw-JSON Parquet file of a day."""
    return day_dir(export_dir, day, dataset=RAW_DATASET) / PART_NAME


def relative_day_path(day: date) -> Path:
    """Where a day's typed file lives inside the export directory (what `day_exports.path` holds)."""
    return day_path(Path(), day)


def dataset_glob(export_dir: Path) -> str:
    """A glob matching every typed day file, for `read_parquet(…, hive_partitioning=true)`/`scan_parquet`."""
    return str(Path(export_dir) / DATASET / f"{_PARTITION_PREFIX}*" / "*.parquet")


def exported_days(export_dir: Path) -> list[date]:
    """Days that have a typed export file, in order."""
    root = Path(export_dir) / DATASET
    if not root.is_dir():
        return []
    days = []
    for entry in root.iterdir():
        if entry.name.startswith(_PARTITION_PREFIX) and (entry / PART_NAME).is_file():
            with contextlib.suppress(ValueError):
                days.append(date.fromisoformat(entry.name.removeprefix(_PARTITION_PREFIX)))
    return sorted(days)


def scratch_path(directory: Path, day: date) -> Path:
    """A throw-away Parquet file of a day's rows in `directory` (a roll-up of a day not exported)."""
    return Path(directory) / f"scratch-{day.isoformat()}-{uuid.uuid4().hex}.parquet"


def temporary_path(target: Path) -> Path:
    # Not `*.parquet`: a reader globbing the dataset never sees a file being written.
    return target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"


def kept_path(target: Path) -> Path:
    """A hidden second name beside `target`, for its old file until the new one is in place."""
    return target.parent / f".{target.name}.previous-{uuid.uuid4().hex}"
