"""The options of `Billing(...)` and `AsyncBilling(...)`, checked when the object is built. Pure.

A bad option is a mistake in the program, not in a call's data: ConfigurationError at
construction, never a pymongo or built-in error at first use (and never a NaN that would keep a
retry loop from ending).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from billing.errors import ConfigurationError, InvalidInput, shown

NOT_IN_DATABASE_NAMES = frozenset('/\\. "$\x00')
MAX_DATABASE_NAME_BYTES = 63  # MongoDB: fewer than 64
MAX_SECONDS = 86_400.0


def database_name_problem(name: Any) -> str | None:
    """Why MongoDB would refuse `name` as a database name, or None."""
    if not isinstance(name, str):
        return f"must be a string, got {type(name).__name__}"
    if not name:
        return "must not be empty"
    try:
        size = len(name.encode())
    except UnicodeEncodeError:
        return "must be valid Unicode text (it holds a lone surrogate)"
    if size > MAX_DATABASE_NAME_BYTES:
        return f"must be at most {MAX_DATABASE_NAME_BYTES} bytes as UTF-8, got {size}"
    if bad := sorted(NOT_IN_DATABASE_NAMES & set(name)):
        return f"must not contain {' '.join(repr(c) for c in bad)}"
    return None


def database(name: Any) -> str:
    if problem := database_name_problem(name):
        raise ConfigurationError(f"database {shown(name)} {problem}: use letters, digits, "
                                 "'_' or '-' (e.g. database='billing')")
    return str(name)


def seconds(value: Any, *, name: str) -> float:
    """A finite number of seconds above 0 and at most a day."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or not 0 < value <= MAX_SECONDS:
        raise ConfigurationError(f"{name} must be a number of seconds above 0 and at most "
                                 f"{MAX_SECONDS:g}, got {shown(value)}")
    return float(value)


def schedule(value: Any, *, name: str) -> tuple[int, ...]:
    """A retry schedule (`plans.collections.schedule`), as a construction option."""
    from billing.plans import collections

    try:
        return collections.schedule(value, name=name)
    except InvalidInput as exc:
        raise ConfigurationError(exc.message) from None


def retention(value: Any, *, name: str) -> timedelta:
    """How long billing events are kept: a timedelta from 1 hour to 3650 days."""
    if not isinstance(value, timedelta) or \
            not timedelta(hours=1) <= value <= timedelta(days=3650):
        raise ConfigurationError(f"{name} must be a timedelta from 1 hour to 3650 days, "
                                 f"got {shown(value)}")
    return value


def count(value: Any, *, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigurationError(f"{name} must be an int from {low} to {high}, "
                                 f"got {shown(value)}")
    return value


def cap(value: Any, *, name: str) -> int | None:
    """None (detected from the server), 0 (no cap) or how many at most."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or not 0 <= value <= 10_000):
        raise ConfigurationError(f"{name} must be None (by the server), 0 (no cap) or an int "
                                 f"up to 10000, got {shown(value)}")
    return value


def flag(value: Any, *, name: str) -> bool | None:
    """True, False or None (None: detected from the server)."""
    if value is not None and not isinstance(value, bool):
        raise ConfigurationError(f"{name} must be True, False or None, got {shown(value)}")
    return value


def secret(value: Any, *, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{name} must be a non-empty string or None, "
                                 f"got {type(value).__name__}")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ConfigurationError(f"{name} must be valid Unicode text (it holds a lone "
                                 "surrogate)") from None
    return value


def clock(value: Any) -> Callable[[], Any]:
    if not callable(value):
        raise ConfigurationError(f"clock must be a callable returning an aware datetime, "
                                 f"got {type(value).__name__}")
    return value  # type: ignore[no-any-return]


def instance(value: Any, kind: type, *, name: str, example: str) -> None:
    if not isinstance(value, kind):
        raise ConfigurationError(f"{name} must be a {kind.__module__}.{kind.__name__}, got "
                                 f"{type(value).__name__}: {example}")


def gateway(value: Any, *, methods: Iterable[str], coroutines: bool, example: str) -> None:
    """None, or an object with the gateway's methods, coroutine functions exactly when
    `coroutines` (an async gateway in Billing would return coroutines nobody awaits)."""
    if value is None:
        return
    wrong = [m for m in methods if not callable(getattr(value, m, None))
             or inspect.iscoroutinefunction(getattr(value, m)) is not coroutines]
    if wrong:
        kind = "async " if coroutines else ""
        raise ConfigurationError(f"gateway must be a {kind}payment gateway ({example}); "
                                 f"{type(value).__name__} lacks {kind}{', '.join(wrong)}")
