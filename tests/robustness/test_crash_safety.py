"""Crash safety: `phpq index` killed with SIGKILL at random points, then checked and completed; and two
instances on one index."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from phpq.library import Library
from tests.conftest import write_image_folder

KILLS = 5


def phpq_command(database: Path, *arguments: str) -> list[str]:
    return [sys.executable, "-m", "phpq.cli", "--db", str(database), "--cpu", *arguments]


def committed_codes(database: Path) -> int:
    try:
        with sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True, timeout=5) as connection:
            return connection.execute("SELECT COUNT(*) FROM codes").fetchone()[0]
    except sqlite3.Error:
        return 0


def rows_and_codes(database: Path) -> tuple[list[str], dict[str, bytes]]:
    with sqlite3.connect(database) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        paths = [row[0] for row in connection.execute("SELECT path FROM images ORDER BY path")]
        codes = dict(
            connection.execute("SELECT i.path, c.code FROM codes c JOIN images i ON i.id = c.image_id").fetchall()
        )
    return paths, codes


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="SIGKILL is POSIX")
def test_sigkill_mid_index_loses_nothing_and_the_next_run_completes(tmp_path, tiny_model, tally):
    photos = write_image_folder(tmp_path / "photos", n_classes=4, per_class=100, size=160)
    files = sorted(str(path) for path in photos.rglob("*.jpg"))
    database = tmp_path / "data" / "index.sqlite3"
    with Library(database, prefer_cuda=False) as library:
        library.activate_model(library.import_model(tiny_model).id)
        library.add_folder(photos)
    reference = tmp_path / "reference" / "index.sqlite3"
    with Library(reference, prefer_cuda=False) as library:
        library.activate_model(library.import_model(tiny_model).id)
        library.add_folder(photos)
        library.index(batch_size=8)

    rng = np.random.default_rng(2026)
    progress = []
    for attempt in range(KILLS):
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        process = subprocess.Popen(phpq_command(database, "index"), **quiet)
        if attempt == 0:
            time.sleep(float(rng.uniform(0.2, 1.0)))  # during start-up, model loading or the folder scan
        else:  # mid-encoding: once a random number of further codes has been committed
            target = (progress[-1] if progress else 0) + int(rng.integers(1, 60))
            while process.poll() is None and committed_codes(database) < target:
                time.sleep(0.01)
        if process.poll() is not None:
            break  # it finished before the kill
        process.send_signal(signal.SIGKILL)
        process.wait()
        tally["kills"] += 1
        paths, codes = rows_and_codes(database)
        assert len(paths) == len(set(paths)) and set(paths) <= set(files)
        assert set(codes) <= set(paths)
        progress.append(len(codes))
    assert len(progress) >= 3, f"only {len(progress)} kills landed"

    finish = subprocess.run(phpq_command(database, "index"), capture_output=True, text=True, timeout=300)
    assert finish.returncode == 0, finish.stderr
    paths, codes = rows_and_codes(database)
    assert paths == files  # exactly one row per photo
    _, expected = rows_and_codes(reference)
    agreement = np.mean([codes[path] == expected[path] for path in files])
    assert agreement >= 0.99, f"only {agreement:.1%} of codes equal an uninterrupted run's"
    assert progress == sorted(progress)  # every kill kept what the previous runs had committed


def test_a_second_instance_gets_a_clear_message_and_can_still_search(tmp_path, tiny_model, tally):
    photos = write_image_folder(tmp_path / "photos", n_classes=4, per_class=2)
    database = tmp_path / "data" / "index.sqlite3"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from phpq.library import Library\n"
            "library = Library(sys.argv[1], prefer_cuda=False)\n"
            "library.activate_model(library.import_model(sys.argv[2]).id)\n"
            "library.add_folder(sys.argv[3]); library.index()\n"
            "print('holding', flush=True); time.sleep(120)\n",
            str(database),
            str(tiny_model),
            str(photos),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        busy = subprocess.run(phpq_command(database, "index"), capture_output=True, text=True, timeout=120)
        assert busy.returncode == 1 and "is using it" in busy.stderr and "can search" in busy.stderr
        query = next(photos.rglob("*.jpg"))
        search = subprocess.run(phpq_command(database, "search", str(query)), capture_output=True, text=True)
        assert search.returncode == 0 and search.stdout.count("\n") == 7
        tally["refusals"] += 1
    finally:
        holder.kill()
        holder.wait()
    # the holder died without closing anything: the lock went with it, and the index is sound
    after = subprocess.run(phpq_command(database, "index"), capture_output=True, text=True, timeout=120)
    assert after.returncode == 0 and "8 unchanged" in after.stdout
    assert rows_and_codes(database)[0] == sorted(str(path) for path in photos.rglob("*.jpg"))
