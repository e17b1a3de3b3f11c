"""Run callers at once and collect what each returned or raised.

    raced = in_threads([lambda: b.invoices.pay(org, inv)] * 8)     # released together
    raced = await as_tasks([lambda: ab.invoices.pay(org, inv)] * 8)
    assert raced.errors == [] and len(raced.results) == 8

Every caller's outcome lands in `results` or `errors` (in the order they finished), so a test
asserts on all of them; a thread still running after `timeout` fails the test.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
JOIN_S = 180.0


@dataclass
class Raced(Generic[T]):
    results: list[T] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)

    def errors_except(self, *allowed: type[BaseException]) -> list[BaseException]:
        """The errors that are none of `allowed`."""
        return [e for e in self.errors if not isinstance(e, allowed)]


def in_threads(calls: Sequence[Callable[[], T]], *, timeout: float = JOIN_S) -> Raced[T]:
    """One thread per call, released together by a barrier; waits for all of them."""
    barrier = threading.Barrier(len(calls))
    lock = threading.Lock()
    raced: Raced[T] = Raced()

    def run(call: Callable[[], T]) -> None:
        barrier.wait()
        try:
            result = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            with lock:
                raced.errors.append(exc)
        else:
            with lock:
                raced.results.append(result)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    stuck = sum(t.is_alive() for t in threads)
    assert not stuck, f"{stuck} of {len(threads)} threads still running after {timeout} s"
    return raced


async def as_tasks(calls: Sequence[Callable[[], Awaitable[T]]]) -> Raced[T]:
    """One task per call, all started before any runs; waits for all of them."""
    raced: Raced[T] = Raced()

    async def run(call: Callable[[], Awaitable[T]]) -> None:
        try:
            result = await call()
        except Exception as exc:  # noqa: BLE001 - handed to the test
            raced.errors.append(exc)
        else:
            raced.results.append(result)

    await asyncio.gather(*(run(call) for call in calls))
    return raced
