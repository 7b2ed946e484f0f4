"""Run the benchmarks: `python -m benchmarks [--size smoke|default|large] [--only 1,3] [--report]`.

Each benchmark starts its own PostgreSQL (the production settings: fsync on) in a temporary directory
and removes it afterwards. Progress goes to stderr; the results table goes to stdout (as the Markdown
section of BENCHMARKS.md with `--report`) and, with `--json PATH`, to a JSON file.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.harness import SIZES, Context, Figure, describe_machine
from benchmarks.synthetic import CaptureProfile, EventFactory, describe, learn_profile

# Figure numbers → the module that measures them.
BENCHMARKS: dict[tuple[int, ...], str] = {
    (1, 2): "benchmarks.ingest_bench",
    (3,): "benchmarks.rollup_bench",
    (4, 5): "benchmarks.query_bench",
    (6,): "benchmarks.storage_bench",
    (7,): "benchmarks.freshness_bench",
    (8,): "benchmarks.bus_bench",
    (9,): "benchmarks.feed_bench",
    (10, 11): "benchmarks.bot_bench",
    (12,): "benchmarks.spark_bench",
    (13,): "benchmarks.memory_bench",
}
ALL_FIGURES = tuple(n for numbers in BENCHMARKS for n in numbers)


def parse_only(text: str | None) -> set[int]:
    if not text:
        return set(ALL_FIGURES)
    wanted = {int(part) for part in text.replace(" ", "").split(",") if part}
    unknown = wanted - set(ALL_FIGURES)
    if unknown:
        raise argparse.ArgumentTypeError(
            f"no benchmark numbered {sorted(unknown)}; choose from {ALL_FIGURES}"
        )
    return wanted


def run_benchmarks(size_name: str, only: set[int], *, seed: int = 1) -> tuple[dict[str, str], list[Figure]]:
    """Run the benchmarks measuring any figure in `only`; the machine description and the figures."""
    size = SIZES[size_name]
    machine = describe_machine()
    machine["size"] = size_name
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="teston-bench-work-"))
    figures: list[Figure] = []
    try:
        profile = learn_profile(seed=seed)
        machine["synthetic events"] = synthetic_check(profile, seed)
        context = Context(size=size, workdir=workdir, profile=profile, seed=seed)
        for numbers, module_name in BENCHMARKS.items():
            if not only.intersection(numbers):
                continue
            context.log(f"running {module_name} ({size_name})")
            module_started = time.monotonic()
            run: Callable[[Context], list[Figure]] = importlib.import_module(module_name).run
            figures += [figure for figure in run(context) if figure.number in only]
            context.log(f"{module_name} took {time.monotonic() - module_started:.0f}s")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    machine["total time"] = f"{time.monotonic() - started:.0f} s"
    return machine, sorted(figures, key=lambda figure: figure.number)


def synthetic_check(profile: CaptureProfile, seed: int, events: int = 20_000) -> str:
    """How a sample of generated events compares with the complete capture they were learned from."""
    start = datetime(2025, 5, 3, tzinfo=UTC)
    generated = describe(EventFactory(profile, seed).events(events, start, start + timedelta(days=1)))
    captured = profile.summary

    def line(stats: dict[str, Any]) -> str:
        types = ", ".join(f"{kind} {share:.1%}" for kind, share in stats["types"].items())
        return (
            f"{stats['events']:,} events, {stats['wikis']} wikis, {types}, bots {stats['bot_share']:.1%}, "
            f"main namespace {stats['main_namespace_share']:.1%}, JSON {stats['mean_json_bytes']:.0f} B, "
            f"title/comment/user {stats['mean_title_chars']:.0f}/{stats['mean_comment_chars']:.0f}/"
            f"{stats['mean_user_chars']:.0f} chars"
        )

    return f"capture: {line(captured)}; generated sample: {line(generated)}"


def _met(figure: Figure) -> str:
    if figure.met is None:
        return "—"
    return "met" if figure.met else "**missed**"


def render_report(machine: dict[str, str], figures: Sequence[Figure]) -> str:
    """The results as Markdown: the machine, then one table row per figure, then notes."""
    about = dict(machine)
    synthetic = about.pop("synthetic events", "")
    lines = ["### Machine", ""]
    lines += [f"- {key}: {value}" for key, value in about.items()]
    if synthetic:
        captured, _, generated = synthetic.partition("; generated sample: ")
        lines += ["", "### Synthetic events against the capture", ""]
        lines += [f"- {captured}", f"- generated sample: {generated}"]
    lines += [
        "",
        "### Results",
        "",
        "| # | what | result | baseline (same run) | ratio: median (min–max) | target | |",
        "|---|---|---|---|---|---|---|",
    ]
    for figure in figures:
        cells = [
            str(figure.number),
            figure.what,
            figure.result,
            figure.baseline or "—",
            figure.ratio or "—",
            figure.target,
            _met(figure),
        ]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    # One line per note: an error message may span several.
    notes = [f"{figure.number}. {' '.join(figure.notes.split())}" for figure in figures if figure.notes]
    if notes:
        lines += ["", "Notes:", "", *notes]
    return "\n".join(lines) + "\n"


def all_finite(figures: Sequence[Figure]) -> bool:
    return all(math.isfinite(value) for figure in figures for value in figure.values.values())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description="Run the TestON benchmarks.")
    parser.add_argument(
        "--size", choices=sorted(SIZES), default="default", help="how much work (default: default)"
    )
    parser.add_argument(
        "--only", type=parse_only, default=None, help="comma-separated figure numbers, e.g. 1,3"
    )
    parser.add_argument("--report", action="store_true", help="print the BENCHMARKS.md results section")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    parser.add_argument("--seed", type=int, default=1, help="seed of the synthetic events")
    args = parser.parse_args(argv)
    only = args.only or set(ALL_FIGURES)

    machine, figures = run_benchmarks(args.size, only, seed=args.seed)
    if args.json is not None:
        args.json.write_text(
            json.dumps({"machine": machine, "figures": [figure.__dict__ for figure in figures]}, indent=2)
        )
    if args.report:
        print(render_report(machine, figures))
    else:
        for figure in figures:
            print(f"#{figure.number} {figure.what}")
            print(f"    result   {figure.result}")
            if figure.baseline:
                print(f"    baseline {figure.baseline}")
            if figure.ratio:
                print(f"    ratio    {figure.ratio}")
            print(f"    target   {figure.target}: {_met(figure)}")
    return 0 if all_finite(figures) else 1


if __name__ == "__main__":
    sys.exit(main())
