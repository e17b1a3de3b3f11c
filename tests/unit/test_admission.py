"""The gate that caps the transactions one instance runs at once (billing/admission.py): never
more than its limit inside, every caller admitted in the end, a holder passing again without
waiting, and one asyncio gate usable from one event loop after another."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest

from billing.admission import Admission, AsyncAdmission

CALLERS = 8


class Inside:
    """How many callers are inside at once, at most (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = self.most = self.done = 0

    def enter(self) -> None:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def leave(self) -> None:
        with self._lock:
            self.now -= 1
            self.done += 1


def in_threads(caller: Callable[[], None]) -> None:
    """CALLERS threads running `caller`; fails if one is still running after 30 s."""
    threads = [threading.Thread(target=caller) for _ in range(CALLERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)


@pytest.mark.parametrize("limit", [1, 3])
def test_threads_are_admitted_at_most_limit_at_once_and_all_in_the_end(limit: int) -> None:
    inside, gate, barrier = Inside(), Admission(limit), threading.Barrier(CALLERS)

    def caller() -> None:
        barrier.wait()
        with gate.slot():
            inside.enter()
            time.sleep(0.01)
            inside.leave()

    in_threads(caller)
    assert (inside.most, inside.done) == (limit, CALLERS)


def test_without_a_limit_every_thread_is_inside_at_once() -> None:
    inside, everyone = Inside(), threading.Barrier(CALLERS)
    gate = Admission(None)

    def caller() -> None:
        with gate.slot():
            inside.enter()
            everyone.wait(10)  # fails (BrokenBarrierError) unless all are inside together
            inside.leave()

    in_threads(caller)
    assert (inside.most, inside.done) == (CALLERS, CALLERS)


def test_a_thread_holding_a_slot_passes_again_without_waiting() -> None:
    gate, other = Admission(1), Admission(1)
    entered: list[str] = []

    def nested() -> None:
        with gate.slot(), gate.slot(), other.slot():
            entered.append("inner")
        with gate.slot():  # released: free again
            entered.append("again")

    t = threading.Thread(target=nested)
    t.start()
    t.join(5)
    assert not t.is_alive() and entered == ["inner", "again"]


async def _tasks(gate: AsyncAdmission, inside: Inside) -> None:
    async def caller() -> None:
        async with gate.slot():
            inside.enter()
            await asyncio.sleep(0.01)
            inside.leave()

    await asyncio.gather(*(caller() for _ in range(CALLERS)))


@pytest.mark.parametrize("limit", [1, 3, None])
def test_tasks_are_admitted_at_most_limit_at_once_in_each_event_loop(limit: int | None) -> None:
    gate = AsyncAdmission(limit)
    for _ in range(2):  # a second loop after the first: the gate serves it too
        inside = Inside()
        asyncio.run(asyncio.wait_for(_tasks(gate, inside), 30))
        assert (inside.most, inside.done) == (limit or CALLERS, CALLERS)


def test_a_task_holding_a_slot_passes_again_and_others_still_wait() -> None:
    gate = AsyncAdmission(1)
    order: list[str] = []

    async def holder() -> None:
        async with gate.slot():
            order.append("outer")
            async with gate.slot():
                order.append("inner")
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.02)
            order.append("outer done")

    async def other() -> None:
        await asyncio.sleep(0.005)
        async with gate.slot():
            order.append("other")

    async def both() -> None:
        await asyncio.gather(holder(), other())

    asyncio.run(asyncio.wait_for(both(), 5))
    assert order == ["outer", "inner", "outer done", "other"]
