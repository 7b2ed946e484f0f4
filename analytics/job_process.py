"""The scheduled jobs, run in this process or in a child process of their own.

A roll-up's export (Arrow), figures (Polars) and aggregates (DuckDB) allocate in proportion to the day,
and their allocators keep much of what they free: run inside the long-lived service, every intraday
roll-up left its resident set a step higher (BENCHMARKS.md, figure 13). In a child
(`python -m analytics.job_process`) the whole recorded run — advisory lock, `job_runs` row, work — runs
on the child's one connection, and its memory goes back to the system when the child exits. The
parent holds no connection meanwhile, so a run still needs one connection of the budget.

The parent writes the request as JSON on the child's stdin (the database URL among it: never in the
arguments, which `ps` shows) and reads JSON lines from its stdout: `{"started": id}` once the run's
`running` row is committed, then `{"run": {...}}` with the outcome, or `{"error": "..."}` when the run
itself could not be made. The child logs to the stderr it shares with the parent, in the same format. A
child that ends without an outcome (stopped after `JOB_TIMEOUT`, crashed, never started) has its run
recorded as failed by the parent, with what happened as the error; the parent always waits for its
child, so none is left behind.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from analytics.runs import INTRADAY, NIGHTLY, Connect, JobResult, JobRun, record_failure, run_recorded
from teston.core import redaction
from teston.core.statuses import JobStatus

log = logging.getLogger(__name__)

CHILD_MODULE = "analytics.job_process"
DEFAULT_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

Work = Callable[[psycopg.Connection], JobResult]


@dataclass(frozen=True)
class JobRequest:
    """One scheduled run: which job, for which slot, with the clock's reading and the job's settings."""

    kind: str
    now: datetime
    slot: datetime
    export_dir: Path
    retention_days: int


@dataclass(frozen=True)
class ChildJobs:
    """How the schedule's jobs run in a child: the database, the time limit and the child's logging."""

    url: str
    timeout: timedelta
    log_level: str = "INFO"
    log_format: str = DEFAULT_LOG_FORMAT
    python: str = sys.executable


def scheduled_work(request: JobRequest) -> Work:
    """The work of the scheduled job `request` names."""
    # Imported when a job runs here: the job bodies load Arrow and Polars, which a process that runs
    # its jobs in a child never needs.
    from analytics import jobs

    if request.kind == INTRADAY:
        return lambda conn: jobs.intraday(conn, request.export_dir, now=request.now)
    if request.kind == NIGHTLY:
        return lambda conn: jobs.nightly(
            conn, request.export_dir, retention_days=request.retention_days, now=request.now
        )
    raise ValueError(f"no scheduled job {request.kind!r}")


def run_here(connect: Connect, request: JobRequest) -> JobRun:
    """Run the job in this process, recorded; what it freed is handed back to the system afterwards."""
    from analytics.memory import return_freed_memory

    try:
        return run_recorded(connect, request.kind, scheduled_work(request), slot=request.slot)
    finally:
        # What the run's export and figures freed goes back to the system, not kept by the
        # allocators in this long-lived process until the next run.
        return_freed_memory()


def run_in_child(connect: Connect, request: JobRequest, child: ChildJobs) -> JobRun:
    """Run the job in a child process and return its recorded run; never raises for the job's errors.

    `connect` is used only when the child ended without recording its outcome.
    """
    started = time.perf_counter()
    payload = json.dumps(_request_json(request, child)).encode()
    problem: str | None = None
    try:
        process = subprocess.Popen(  # noqa: S603 (our own interpreter and module, no shell)
            [child.python, "-m", CHILD_MODULE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            # Its own session: a Ctrl-C meant for the service does not cut a job short; the service's
            # stop waits for the job as it waits for one run in its own process.
            start_new_session=True,
        )
    except OSError as exc:
        output, problem = b"", f"the job's process did not start: {exc}"
    else:
        try:
            output, _ = process.communicate(payload, timeout=child.timeout.total_seconds())
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()  # reaps it: no zombie
            problem = f"the job's process was killed after {_duration(child.timeout)} (JOB_TIMEOUT)"
        else:
            if process.returncode != 0:
                problem = _ending(process.returncode)
    messages = _messages(output)
    if "run" in messages:
        return _job_run(messages["run"])
    error = str(messages.get("error") or problem or "the job's process ended without an outcome")
    log.error("%s failed: %s", request.kind, error)
    started_id = messages.get("started")
    return record_failure(
        connect,
        request.kind,
        error,
        run_id=int(started_id) if started_id is not None else None,
        seconds=time.perf_counter() - started,
        details={"slot": request.slot.isoformat()},
    )


def _duration(span: timedelta) -> str:
    seconds = span.total_seconds()
    return f"{seconds:g} s" if seconds < 120 else f"{seconds / 60:g} min"


def _ending(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"the job's process was ended by {name}"
    return f"the job's process exited with status {returncode}"


def _messages(output: bytes) -> dict[str, Any]:
    """The child's protocol lines, later ones winning; anything else on its stdout is ignored."""
    messages: dict[str, Any] = {}
    for line in output.decode(errors="replace").splitlines():
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if isinstance(message, dict):
            messages.update(message)
    return messages


def _request_json(request: JobRequest, child: ChildJobs) -> dict[str, Any]:
    return {
        "kind": request.kind,
        "now": request.now.isoformat(),
        "slot": request.slot.isoformat(),
        "export_dir": str(request.export_dir),
        "retention_days": request.retention_days,
        "url": child.url,
        "log_level": child.log_level,
        "log_format": child.log_format,
    }


def _job_run(fields: dict[str, Any]) -> JobRun:
    return JobRun(
        id=int(fields["id"]),
        kind=str(fields["kind"]),
        status=JobStatus(fields["status"]),
        rows=None if fields["rows"] is None else int(fields["rows"]),
        details=dict(fields["details"]),
        error=fields["error"],
    )


# -- the child ------------------------------------------------------------------------------------------


def _with_peak_memory(work: Work) -> Work:
    """`work`, its result's details also giving the child's peak resident set (the job's own)."""

    def measured(conn: psycopg.Connection) -> JobResult:
        result = work(conn)
        # Linux reports ru_maxrss in KiB.
        result.details["max_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        return result

    return measured


def main() -> int:
    """The child: read the request on stdin, run the job recorded, report on stdout."""
    # The protocol keeps stdout for itself; whatever a library prints goes to stderr with the logs.
    channel = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())

    def tell(message: dict[str, Any]) -> None:
        channel.write(json.dumps(message) + "\n")
        channel.flush()

    fields = json.loads(sys.stdin.read())
    url = str(fields["url"])
    logging.basicConfig(level=fields["log_level"], format=fields["log_format"], stream=sys.stderr)
    password = conninfo_to_dict(url).get("password")
    secrets = [str(password)] if password else []
    for handler in logging.getLogger().handlers:
        redaction.install(handler, secrets)
    request = JobRequest(
        kind=str(fields["kind"]),
        now=datetime.fromisoformat(fields["now"]),
        slot=datetime.fromisoformat(fields["slot"]),
        export_dir=Path(fields["export_dir"]),
        retention_days=int(fields["retention_days"]),
    )
    try:
        run = run_recorded(
            lambda: psycopg.connect(url),
            request.kind,
            _with_peak_memory(scheduled_work(request)),
            slot=request.slot,
            on_start=lambda run_id: tell({"started": run_id}),
        )
    except Exception as exc:
        log.exception("%s failed", request.kind)
        error = "".join(traceback.format_exception_only(exc)).strip()
        tell({"error": redaction.redact(error, secrets)})
        return 1
    tell({"run": asdict(run)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
