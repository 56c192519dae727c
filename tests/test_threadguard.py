"""The thread guard: guarded calls fail on a forbidden thread and work everywhere else."""

from __future__ import annotations

import threading

import pytest

from phpq.threadguard import WrongThreadError, allow_current_thread, forbid_current_thread, guarded


@guarded
class Counter:
    def __init__(self) -> None:
        self.count = 0

    def add(self) -> int:
        self.count += 1
        return self.count

    @property
    def doubled(self) -> int:
        return 2 * self.count

    def _private(self) -> str:
        return "not guarded"


def test_guarded_calls_fail_on_a_forbidden_thread_only():
    counter = Counter()  # construction is not guarded: a front end may build the object anywhere
    forbid_current_thread()
    try:
        with pytest.raises(WrongThreadError, match=r"Counter\.add"):
            counter.add()
        with pytest.raises(WrongThreadError, match=r"Counter\.doubled"):
            _ = counter.doubled
        assert counter._private() == "not guarded"
        results = []
        worker = threading.Thread(target=lambda: results.append((counter.add(), counter.doubled)))
        worker.start()
        worker.join()
        assert results == [(1, 2)]  # another thread is free to do the work
    finally:
        allow_current_thread()
    assert counter.add() == 2
