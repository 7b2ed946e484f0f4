"""Which processes use the embedded server, so the last one out stops it and `teston db stop` can name them.

Each process using the server holds a shared lock on `.users` until it is done, so the last one out can
tell that nobody else needs the server (an exclusive lock succeeds). It also holds a lock on a file of its
own in `users/`, naming its pid and command; a file whose lock nobody holds is left over from a killed
process and is removed when found.
"""

from __future__ import annotations

import fcntl
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO


@dataclass(frozen=True, slots=True)
class ServerUser:
    """Another process using the embedded server."""

    pid: int
    command: str

    def __str__(self) -> str:
        return f"pid {self.pid} ({self.command or 'teston'})"


class ServerUsers:
    """This handle's registration as a user of the server in `data_dir`, and a view of the others."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._use_handle: TextIO | None = None
        self._user_handle: TextIO | None = None

    @property
    def _users_dir(self) -> Path:
        return self.data_dir / "users"

    @property
    def _own_file(self) -> Path:
        # One per handle: two handles of one process (tests do that) must not wait for each other's lock.
        return self._users_dir / f"{os.getpid()}-{id(self)}"

    def register(self) -> None:
        """Count this handle as a user until `unregister` (or the process's end)."""
        if self._use_handle is not None:
            return
        self._use_handle = open(self.data_dir / ".users", "a")  # noqa: SIM115 (held until unregister)
        fcntl.flock(self._use_handle, fcntl.LOCK_SH)
        self._users_dir.mkdir(exist_ok=True)
        mine = open(self._own_file, "w")  # noqa: SIM115 (held until unregister)
        fcntl.flock(mine, fcntl.LOCK_EX)
        mine.write(" ".join(["teston", *sys.argv[1:]]) if sys.argv else "teston")
        mine.flush()
        self._user_handle = mine

    def unregister(self) -> bool:
        """Drop this handle's use; return True if no other process is using the server."""
        mine, self._user_handle = self._user_handle, None
        if mine is not None:
            self._own_file.unlink(missing_ok=True)
            mine.close()
        handle, self._use_handle = self._use_handle, None
        if handle is None:
            return False
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        finally:
            handle.close()
        return True

    def others(self) -> list[ServerUser]:
        """The other processes using the server now (their pid and command)."""
        users = []
        for entry in sorted(self._users_dir.glob("*")) if self._users_dir.is_dir() else []:
            pid = entry.name.partition("-")[0]
            if not pid.isdigit() or int(pid) == os.getpid():
                continue
            try:
                with open(entry) as handle:
                    try:
                        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        users.append(ServerUser(int(pid), handle.read().strip()))
                        continue
                entry.unlink(missing_ok=True)  # its process ended without saying so
            except FileNotFoundError:
                continue
        return users
