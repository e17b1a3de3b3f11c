"""What every service shares: the unit of work, the clock and the limits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from billing._async.unit_of_work import AsyncUnitOfWork


@dataclass(frozen=True)
class AsyncContext:
    uow: AsyncUnitOfWork
    now: Callable[[], datetime]
    max_docs_per_transaction: int
