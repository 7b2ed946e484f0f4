"""The benchmark harness runs end to end at its smoke size and produces every figure.

Only that: no timing is asserted (CI machines are shared and noisy); `python -m benchmarks` measures.
"""

from __future__ import annotations

import math

import pytest

from benchmarks.__main__ import ALL_FIGURES, render_report, run_benchmarks


def test_smoke_run_produces_every_figure_as_a_finite_number() -> None:
    machine, figures = run_benchmarks("smoke", set(ALL_FIGURES))

    assert [figure.number for figure in figures] == list(ALL_FIGURES)
    for figure in figures:
        assert figure.values, f"figure {figure.number} has no numbers"
        for name, value in figure.values.items():
            assert math.isfinite(value), f"figure {figure.number}: {name} = {value}"
    assert machine["cpu"]
    assert machine["postgresql"] != "?"
    by_number = {figure.number: figure for figure in figures}
    # The bus path stored every event it was sent, and `teston up` stored and posted what it followed.
    assert by_number[8].values["missing"] == 0
    assert by_number[13].values["rows_stored"] == 20 * 50
    assert by_number[13].values["feed_posts"] > 0
    # The roll-ups ran in children of `teston up` (the nightly catch-up at start at least), each measured.
    assert by_number[13].values["job_runs"] >= 1
    assert by_number[13].values["job_child_peak_mib"] > 0
    # The live feeds posted through the fake Discord, which never saw a 429 ignored.
    assert by_number[9].values["posted"] > 0
    assert by_number[9].values["ignored_429"] == 0
    assert by_number[10].values["png_bytes_one"] > 0
    # Both engines rolled the same days up into identical summary rows.
    assert by_number[12].values["identical"] == 1.0
    assert by_number[12].values["events"] > 0
    # Figure 11's loaded round sent every line once (4 per command alone), then again until it had
    # lasted its time; the ingester was storing meanwhile, and every command was served somehow.
    assert by_number[11].values["load_calls"] >= by_number[11].values["alone_calls"] * 4
    shares = ("kept_share", "stale_share", "joined_share", "read_share")
    assert sum(by_number[11].values[share] for share in shares) == pytest.approx(1.0)
    report = render_report(machine, figures)
    assert all(f"| {number} |" in report for number in ALL_FIGURES)
