"""Robustness suite: shared counters, printed as one summary at the end of `pytest tests/robustness -q`."""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from pathlib import Path

import pytest

TALLY: Counter[str] = Counter()
LABELS = {
    "bad_inputs": "bad inputs tried (files, folders, random byte strings)",
    "kills": "SIGKILLs survived mid-index",
    "files_verified": "user files verified byte-identical after every operation",
    "refusals": "damaged databases, unwritable folders and bad models refused with a message",
}


@pytest.fixture
def tally() -> Counter[str]:
    return TALLY


def pytest_terminal_summary(terminalreporter) -> None:
    if TALLY:
        terminalreporter.write_sep("=", "robustness summary")
        for key, label in LABELS.items():
            terminalreporter.write_line(f"{TALLY[key]:6d}  {label}")


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every entry under ``root``, links not followed: SHA-256 of a file's bytes (or a link's target)
    and its mtime."""
    state = {}
    for directory, folders, files in os.walk(root, followlinks=False):
        for name in folders + files:
            path = Path(directory) / name
            if path.is_symlink():
                state[str(path)] = (f"link:{path.readlink()}", 0)
            elif path.is_dir():
                state[str(path)] = ("dir", path.lstat().st_mtime_ns)
            elif not path.is_file():  # a FIFO or device: never read it (reading a FIFO blocks)
                state[str(path)] = ("special", path.lstat().st_mtime_ns)
            else:
                try:
                    state[str(path)] = (hashlib.sha256(path.read_bytes()).hexdigest(), path.lstat().st_mtime_ns)
                except OSError as error:  # unreadable or special: compared by its metadata
                    state[str(path)] = (f"unreadable:{error.errno}", path.lstat().st_mtime_ns)
    return state
