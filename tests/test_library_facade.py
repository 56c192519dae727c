"""The library facade stays a facade: small, every public member thread-guarded, its names importable."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import phpq.library
from phpq.library import Library
from phpq.threadguard import WrongThreadError, allow_current_thread, forbid_current_thread

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = sorted((ROOT / "phpq").rglob("*.py"))  # the engine and the window
FACADE_LINES = 300
FUNCTION_LINES = 60


def class_lines(path: Path, name: str) -> int:
    (node,) = [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.ClassDef) and n.name == name]
    return node.end_lineno - node.lineno + 1


def test_the_facades_are_small_and_no_runtime_function_is_long():
    source = (ROOT / "phpq" / "library.py").read_text()
    assert len(source.splitlines()) < FACADE_LINES
    assert class_lines(ROOT / "phpq" / "gui" / "window.py", "MainWindow") < FACADE_LINES
    long = []
    for path in RUNTIME:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} has {length} lines")
    assert not long, long


def test_every_public_member_of_the_facade_is_guarded():
    public = [name for name in vars(Library) if not name.startswith("_")]
    assert {"search", "index", "status", "active_model_id", "rebuild", "matrix"} <= set(public)
    bare = object.__new__(Library)  # the guard runs before the method, so no index is needed
    forbid_current_thread()
    try:
        for name in public:
            member = inspect.getattr_static(Library, name)
            with pytest.raises(WrongThreadError, match=f"Library.{name}"):
                if isinstance(member, property):
                    getattr(bare, name)
                else:
                    getattr(bare, name)()
    finally:
        allow_current_thread()


def test_the_names_front_ends_import_stay_in_phpq_library():
    for name in ("IndexReport", "Library", "LibraryError", "LibraryStatus", "ReadOnlyError", "SearchSettings"):
        assert hasattr(phpq.library, name), name
    assert issubclass(phpq.library.ReadOnlyError, phpq.library.LibraryError)
