"""What the window shows for an exception a worker hands back, decided by its type (never its text)."""

from __future__ import annotations

from phpq.db import DamagedDatabaseError, DatabaseError
from phpq.gui.workers import readable_error
from phpq.library import LibraryError
from phpq.model import ModelError

EXPECTED_ERRORS = (LibraryError, ModelError, DatabaseError, OSError)  # their message is written for a user


def failure_text(error: BaseException) -> str:
    """One readable line: the message of an expected error, or the message and the type of a bug."""
    if isinstance(error, EXPECTED_ERRORS):
        return readable_error(error)
    return f"{readable_error(error)} (unexpected {type(error).__name__}; the log has details)"


def offers_rebuild(error: BaseException) -> bool:
    """True when setting the index aside and building it again is the way out."""
    return isinstance(error, DamagedDatabaseError)
