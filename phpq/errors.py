"""The errors the library facade raises for requests it cannot carry out (the CLI maps them to exit codes)."""

from __future__ import annotations


class LibraryError(Exception):
    """A request the library cannot carry out (unknown folder, unreadable query photo, ...)."""


class ReadOnlyError(LibraryError):
    """A change was asked of an index that another instance is writing to."""
