"""Window start-up: process start to ready (default model loaded, first search possible), in one run.

Usage: QT_QPA_PLATFORM=offscreen python bench/gui_startup.py [--runs 5] [--db INDEX.sqlite3]
(or under xvfb-run for a real X server). Each run starts `python -m phpq --exit-when-ready`, which
closes as soon as the window is ready; the time is measured from outside, from process creation to
the "ready" line. Baselines in the same run: a bare `python -c pass`, and `python -c "import
PySide6.QtWidgets"` (the Qt import every PySide6 app pays).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def time_until_line(command: list[str], marker: str | None) -> float:
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    if marker is not None:
        for line in process.stdout:
            if line.startswith(marker):
                break
        elapsed = time.perf_counter() - start
        process.wait()
        return elapsed
    process.wait()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--db", type=Path, help="an existing index (default: a new empty one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="phpq-bench-") as temp:
        database = args.db or Path(temp) / "index.sqlite3"
        app = [sys.executable, "-m", "phpq", "--db", str(database), "--cpu", "--exit-when-ready"]
        time_until_line(app, "ready")  # first run creates the database and registers the default model
        results: dict[str, list[float]] = {"python -c pass": [], "import PySide6.QtWidgets": [], "window ready": []}
        for _ in range(args.runs):
            results["python -c pass"].append(time_until_line([sys.executable, "-c", "pass"], None))
            qt = [sys.executable, "-c", "import PySide6.QtWidgets"]
            results["import PySide6.QtWidgets"].append(time_until_line(qt, None))
            results["window ready"].append(time_until_line(app, "ready"))
        for name, times in results.items():
            print(f"{name:>26}: median {np.median(times):.2f} s (min {min(times):.2f}, max {max(times):.2f})")


if __name__ == "__main__":
    main()
