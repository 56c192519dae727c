"""A guard that keeps library work off threads that must stay responsive (the window's GUI thread).

Whoever calls ``forbid_current_thread()`` on a thread makes every public method of a class decorated with
``@guarded`` raise ``WrongThreadError`` when it is called on that thread. The offscreen GUI tests forbid
the window's GUI thread, so a window change that calls the library there fails them; the installed app
does not, so a slip costs a stutter, not an error.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

_forbidden: set[int] = set()
ClassT = TypeVar("ClassT", bound=type)


class WrongThreadError(RuntimeError):
    """A library call ran on a thread that must not do library work."""


def forbid_current_thread() -> None:
    """From now on, guarded calls made on the calling thread raise ``WrongThreadError``."""
    _forbidden.add(threading.get_ident())


def allow_current_thread() -> None:
    """Undo ``forbid_current_thread`` for the calling thread."""
    _forbidden.discard(threading.get_ident())


def check_thread(what: str) -> None:
    """Raise ``WrongThreadError`` if the calling thread is forbidden."""
    if threading.get_ident() in _forbidden:
        raise WrongThreadError(f"{what} ran on a thread that must stay responsive (the GUI thread)")


def _guard(function: Callable[..., Any], name: str) -> Callable[..., Any]:
    @functools.wraps(function)
    def checked(*args: Any, **kwargs: Any) -> Any:
        check_thread(name)
        return function(*args, **kwargs)

    return checked


def guarded(cls: ClassT) -> ClassT:
    """Class decorator: every public method and property getter of ``cls`` checks the thread first."""
    for name, member in list(vars(cls).items()):
        if name.startswith("_"):
            continue
        qualified = f"{cls.__name__}.{name}"
        if isinstance(member, property) and member.fget is not None:
            setattr(cls, name, property(_guard(member.fget, qualified), member.fset, member.fdel, member.__doc__))
        elif isinstance(member, classmethod):
            setattr(cls, name, classmethod(_guard(member.__func__, qualified)))
        elif callable(member) and not isinstance(member, staticmethod | type):
            setattr(cls, name, _guard(member, qualified))
    return cls
