"""The one lock of a client's local state, as a method decorator.

``LocalState.lock`` (an ``RLock``) guards the store and the budget: the worker thread holds it
while it applies a server version, and the event loop takes it in every client method that
reads or writes them. Decorated methods are synchronous: the lock is never held across an
``await``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


def locked(fn: Callable[P, R]) -> Callable[P, R]:
    """Run a (synchronous) method of an object with a ``local`` holding ``local.lock``."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        owner: Any = args[0]
        with owner.local.lock:
            return fn(*args, **kwargs)

    return wrapper
