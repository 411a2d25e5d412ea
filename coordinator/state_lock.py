"""One coordinator per state folder: an exclusive lock held for the coordinator's lifetime.

Two coordinators on one ledger would each believe its rounds are the only ones; the kernel's
advisory lock (released when the process dies, however it dies) makes the second one refuse to start.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from edge_runtime.errors import UserError

LOCK_FILE = "coordinator.lock"


class StateLock:
    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / LOCK_FILE
        self._file = open(self.path, "a+")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.seek(0)
            holder = self._file.read().strip() or "another process"
            self._file.close()
            raise UserError(
                f"another coordinator (pid {holder}) is using the state folder {folder}; "
                "stop it first, or give this one another --state-dir"
            ) from None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(str(os.getpid()))
        self._file.flush()

    def release(self) -> None:
        if not self._file.closed:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
