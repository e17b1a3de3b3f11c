"""Named fault points for crash and rollback tests; no effect unless switched on.

`BILLING_FAULTS="invoice.chunk.after_write=raise,invoice.between_chunks=kill"` (read at import)
or `faults.active({...})` in tests. `raise` throws InjectedFault (inside a transaction this rolls
it back); `kill` sends SIGKILL to this process, as a crash would.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

# Every point the code hits, in the order an invoice run meets them; each has a crash scenario
# (tests/integration/test_crashes.py). There are none between the per-collection bulk writes of
# one transaction: a failure there can only roll the transaction back, as one at `after_write`
# (after the last of them, before the commit) does, so such points would test nothing more.
POINTS = (
    "invoice.chunk.before_write",  # in the transaction, after the snapshot read
    "invoice.chunk.after_write",  # in the transaction, after its writes, before commit
    "invoice.between_chunks",  # after a chunk committed, before the next one
    "invoice.finalize.after_write",
    "invoice.void.after_write",
    "line_items.after_write",
    "customer.after_create",  # Stripe customer created, id not recorded yet
    "payment_methods.attach.after_stripe",  # attached in Stripe, not active here yet
    "payment_methods.attach.after_write",  # in the activation transaction
    "payment_methods.detach.after_mark",  # detaching here (default cleared), Stripe not yet
    "payment_methods.detach.after_stripe",  # detached in Stripe, not marked detached yet
    "payments.after_claim",  # lease taken, no intent yet
    "payments.after_create_intent",  # intent created, not recorded
    "payments.after_confirm",  # money moved, not recorded yet
    "payments.settle.after_write",  # in the settling transaction
    "credit_notes.after_refund",  # refunded in Stripe, not recorded yet
    "webhooks.after_write",  # in the webhook's transaction
    "reconcile.release.after_write",  # in the transaction releasing dangling conversations
    "reconcile.retotal.after_write",  # in the transaction recomputing totals
    "reconcile.methods.after_stripe",  # detached in Stripe, not marked detached yet
    "reconcile.methods.after_write",  # in the transaction marking a method detached
)


class InjectedFault(Exception):
    """Raised by a fault point in `raise` mode; not a BillingError: it stands for a crash."""


def _parse(text: str) -> dict[str, str]:
    pairs = (item.partition("=") for item in text.split(",") if item.strip())
    return {name.strip(): (mode.strip() or "raise") for name, _, mode in pairs}


_active: dict[str, str] = _parse(os.environ.get("BILLING_FAULTS", ""))


def hit(name: str) -> None:
    """Fire the fault point `name` if it is active."""
    if _active and name in _active:
        if _active[name] == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise InjectedFault(name)


@contextmanager
def active(points: Mapping[str, str]) -> Iterator[None]:
    """Switch fault points on for the duration of a `with` block (tests)."""
    global _active
    saved, _active = _active, {**_active, **points}
    try:
        yield
    finally:
        _active = saved
