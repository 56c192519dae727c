"""One writer per index: an OS file lock next to the database, released when the process ends.

A second app instance (or a `phpq` command while the window indexes) does not get the lock and opens
the index read-only: it can search, and says so clearly when asked to change anything.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


class WriterLock:
    """An exclusive, non-blocking lock on ``path`` (flock on POSIX, msvcrt on Windows)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._handle = None

    def acquire(self) -> bool:
        """True when this process is now the index's writer; False when another holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+b")
        try:
            if sys.platform.startswith("win"):
                import msvcrt

                handle.seek(0)
                msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()).encode())
        handle.flush()
        self._handle = handle
        return True

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing the descriptor releases the lock
            self._handle = None
