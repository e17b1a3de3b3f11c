# Generated from billing/_async by tools/synchro.py: do not edit.
"""What every service shares: the unit of work, the clock and the limits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from billing._sync.unit_of_work import UnitOfWork


@dataclass(frozen=True)
class Context:
    uow: UnitOfWork
    now: Callable[[], datetime]
    max_docs_per_transaction: int
