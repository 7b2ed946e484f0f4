"""The Spark engine on a real standalone cluster (a master and two workers on 127.0.0.1) that loses an
executor mid-job: the figures are still exactly the in-process engine's."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pyspark
import pytest
from polars.testing import assert_frame_equal
from pyspark.sql import functions as F

from analytics import bookkeeping, exports, rollup, spark_engine
from tests.replays import ingest_path

DATA = Path(__file__).parent / "data"
SPARK_HOME = Path(pyspark.__file__).parent
EXECUTOR_CLASS = "org.apache.spark.executor.CoarseGrainedExecutorBackend"
STARTUP_TIMEOUT = 180.0


def _free_ports(count: int) -> list[int]:
    """`count` distinct free ports of 127.0.0.1: each socket is held until all are chosen, so none repeat."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _parent(pid: int) -> int:
    # /proc/PID/stat: "pid (comm) state ppid …"; comm may hold spaces, so read after its ")".
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def _java_processes_under(directory: Path) -> list[int]:
    """Java processes started in `directory` (the cluster's daemons and executors), still alive."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd.startswith(str(directory)) and "java" in _cmdline(int(entry.name)):
            found.append(int(entry.name))
    return found


@dataclass
class Cluster:
    master_url: str
    directory: Path
    daemons: list[subprocess.Popen[bytes]] = field(default_factory=list)


def _start(cluster: Cluster, name: str, arguments: list[str], env: dict[str, str]) -> None:
    home = cluster.directory / name
    home.mkdir()
    with (home / "out.log").open("wb") as log:
        cluster.daemons.append(
            subprocess.Popen(
                [str(SPARK_HOME / "bin" / "spark-class"), *arguments],
                cwd=home,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )


def _alive_workers(ui_port: int) -> int:
    """Workers the master's UI reports ALIVE; 0 while the UI is not up or not yet answering its JSON."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=5) as response:
            state = json.load(response)
    except (OSError, ValueError):
        # Not listening yet, or an HTML page while the master is still starting (seen under load).
        return 0
    if not isinstance(state, dict):
        return 0
    return sum(1 for worker in state.get("workers", []) if worker.get("state") == "ALIVE")


def _stop(cluster: Cluster) -> None:
    for daemon in cluster.daemons:
        if daemon.poll() is None:
            os.killpg(daemon.pid, signal.SIGTERM)
    for daemon in cluster.daemons:
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait(timeout=30)
    # A worker ends its executors as it stops; whatever outlived it is ended here.
    deadline = time.monotonic() + 30
    while (left := _java_processes_under(cluster.directory)) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in left:
        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A standalone master and two workers (one core, 768 MiB each) on free ports of 127.0.0.1."""
    directory = tmp_path / "cluster"
    directory.mkdir()
    port, ui_port, *worker_ports = _free_ports(6)
    cluster = Cluster(master_url=f"spark://127.0.0.1:{port}", directory=directory)
    env = os.environ | {
        "SPARK_HOME": str(SPARK_HOME),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_LOCAL_DIRS": str(directory),
        "SPARK_DAEMON_MEMORY": "256m",
    }
    try:
        _start(
            cluster,
            "master",
            [
                "org.apache.spark.deploy.master.Master",
                *("--host", "127.0.0.1", "--port", str(port)),
                *("--webui-port", str(ui_port)),
            ],
            env,
        )
        for index in range(2):
            _start(
                cluster,
                f"worker-{index}",
                [
                    "org.apache.spark.deploy.worker.Worker",
                    cluster.master_url,
                    *("--host", "127.0.0.1", "--port", str(worker_ports[2 * index])),
                    *("--webui-port", str(worker_ports[2 * index + 1])),
                    *("--cores", "1", "--memory", "768m", "--work-dir", str(directory / f"work-{index}")),
                ],
                env,
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while _alive_workers(ui_port) < 2:
            assert all(daemon.poll() is None for daemon in cluster.daemons), "a Spark daemon exited"
            assert time.monotonic() < deadline, "the workers did not register with the master"
            time.sleep(0.5)
        yield cluster
    finally:
        _stop(cluster)
        assert _java_processes_under(directory) == []


def _executor_of(pid: int) -> int:
    """The executor JVM a Python worker runs under (worker → pyspark daemon → executor)."""
    while pid > 1:
        if EXECUTOR_CLASS in _cmdline(pid):
            return pid
        pid = _parent(pid)
    raise AssertionError("the Python worker does not run under an executor")


def test_figures_are_exact_after_an_executor_is_killed_mid_job(
    cluster: Cluster, db_url: str, conn: psycopg.Connection, tmp_path: Path
) -> None:
    for capture in ("2021-08-27_all-wikis_1950.jsonl", "2025-05-03_sample_144.jsonl"):
        assert ingest_path(db_url, DATA / capture).quarantined == 0
    days = bookkeeping.raw_days(conn)
    files = {day: exports.export_day(conn, tmp_path / "exports", day).path for day in days}
    expected = rollup.figures_of_files(files)

    gate = tmp_path / "gate"
    gate.mkdir()
    started, released = gate / "started", gate / "released"

    def hold_until_released(_):  # unannotated: Spark would read type hints as a pandas UDF's
        # Every task of the job's first stage waits here until the test has killed an executor.
        if not released.exists():
            started.write_text(str(os.getpid()))
            deadline = time.monotonic() + 300
            while not released.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        return True

    config = {
        "spark.executor.memory": "512m",
        "spark.pyspark.python": sys.executable,
        "spark.task.maxFailures": "8",
    }
    outcome: dict[str, object] = {}
    with spark_engine.spark_session(cluster.master_url, config=config) as spark:
        driver = spark.sparkContext._gateway.proc  # type: ignore[union-attr]
        rows = spark_engine.read_days(spark, files)
        held = rows.where(F.udf(hold_until_released, "boolean", useArrow=False)(F.col("event_id")))

        def run() -> None:
            try:
                outcome["figures"] = spark_engine.figures_of_rows(held, sorted(files))
            except Exception as exc:
                outcome["error"] = exc

        job = threading.Thread(target=run)
        job.start()
        try:
            deadline = time.monotonic() + STARTUP_TIMEOUT
            while not started.exists():
                assert job.is_alive(), "no task reached the gate"
                assert time.monotonic() < deadline, "no task reached the gate"
                time.sleep(0.1)
            time.sleep(0.2)  # the marker's pid is written in full
            executor = _executor_of(int(started.read_text()))
            os.kill(executor, signal.SIGKILL)
        finally:
            released.touch()
            job.join(timeout=STARTUP_TIMEOUT)
        assert not job.is_alive()
    assert driver.poll() is not None, "the driver JVM outlived its session"

    assert "error" not in outcome, outcome.get("error")
    figures = outcome["figures"]
    assert isinstance(figures, dict)
    assert sorted(figures) == days
    for day in days:
        got, want = figures[day], expected[day]
        assert want.wiki_stats.height > 0
        assert_frame_equal(got.wiki_stats, want.wiki_stats)
        assert_frame_equal(got.top_pages, want.top_pages)
        assert_frame_equal(got.top_editors, want.top_editors)
