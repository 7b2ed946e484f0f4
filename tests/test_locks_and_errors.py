"""Advisory-lock keys defined once, and a `TestonError` at the top of the CLI as one line."""

from __future__ import annotations

import pytest

import teston.cli
from ingestion.stream_lock import StreamBusy
from teston.core import locks
from teston.core.errors import ConfigurationError, IngestionError, TestonError
from teston.core.settings import SettingsError


def test_every_key_is_distinct_and_the_second_keys_are_int4() -> None:
    one_key = [locks.MIGRATION_KEY, locks.PARTITION_DDL_KEY, locks.ARRIVAL_KEY]
    classes = [locks.JOB_CLASS, locks.STREAM_CLASS, locks.FEEDS_CLASS]
    assert len(set(one_key)) == 3
    assert len(set(classes)) == 3
    assert all(key >> 16 == 0x7E57 for key in one_key + classes)
    assert locks.job_lock_key("nightly") == (locks.JOB_CLASS, locks.fold_crc32("nightly"))
    assert locks.feeds_lock_key(123) == (locks.FEEDS_CLASS, locks.fold_crc32("123"))
    for name in ("nightly", "intraday", "https://stream.example/recentchange", "", "9" * 19):
        assert -(2**31) <= locks.fold_crc32(name) < 2**31
    # zlib.crc32 of "file:/tmp/a.jsonl" is below 2**31 (kept); of "" it is 0.
    assert locks.fold_crc32("file:/tmp/a.jsonl") == 0x5DBB_E971
    assert locks.fold_crc32("") == 0


def test_the_errors_share_one_base() -> None:
    assert issubclass(StreamBusy, IngestionError)
    assert issubclass(IngestionError, TestonError)
    assert issubclass(SettingsError, ConfigurationError)
    assert issubclass(SettingsError, ValueError)


def test_a_teston_error_ends_the_cli_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fails() -> None:
        raise IngestionError("stream s is already being ingested;\n  stop the other ingester")

    monkeypatch.setattr(teston.cli, "app", fails)
    with pytest.raises(SystemExit) as exited:
        teston.cli.main()
    assert exited.value.code == 1
    assert capsys.readouterr().err == "teston: stream s is already being ingested; stop the other ingester\n"
