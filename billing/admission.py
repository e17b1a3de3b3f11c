"""How many transactions one Billing instance runs at once: the gate its unit of work passes
before each transaction.

Written twice, for asyncio tasks and for threads (their primitives differ; the async unit of
work names `AsyncAdmission`, which becomes `Admission` in the generated sync code). A limit of
None admits every transaction at once. A task or thread that already holds a slot of a gate
passes it again without waiting, so a transaction begun inside another cannot wait for itself.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar

# The gates (by id) the current task or thread holds a slot of.
_held: ContextVar[frozenset[int]] = ContextVar("billing_admission_held", default=frozenset())


@contextmanager
def _holding(gate: object) -> Iterator[None]:
    """Marks `gate` as held by the current task or thread while the block runs."""
    token = _held.set(_held.get() | {id(gate)})
    try:
        yield
    finally:
        _held.reset(token)


class Admission:
    """At most `limit` transactions at once across the threads sharing an instance."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self._slots = threading.BoundedSemaphore(limit) if limit is not None else None

    @contextmanager
    def slot(self) -> Iterator[None]:
        if self._slots is None or id(self) in _held.get():
            yield
            return
        with self._slots, _holding(self):
            yield


class AsyncAdmission:
    """At most `limit` transactions at once across the tasks of one event loop sharing an
    instance (an asyncio semaphore belongs to one loop: each loop gets its own)."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self._slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = \
            weakref.WeakKeyDictionary()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self.limit is None or id(self) in _held.get():
            yield
            return
        loop = asyncio.get_running_loop()
        slots = self._slots.get(loop)
        if slots is None:
            slots = self._slots[loop] = asyncio.Semaphore(self.limit)
        async with slots:
            with _holding(self):
                yield
