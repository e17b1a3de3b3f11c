"""Plans for the org's Stripe customer: claim it before creating it, record it once.

A call claims the customer on the org (an expiring claim with a generation) before it asks Stripe
to create one, so concurrent first attaches create one customer. A later claim of the same
generation (the first caller died or lost Stripe's answer) first looks for what that one created.
The generation moves on when the customer is deleted, so the next creation uses a new key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId

from billing.adapters import schema
from billing.adapters.writes import Write
from billing.domain.models import Org
from billing.plans import Plan


@dataclass(frozen=True)
class CustomerStep:
    """What the claim transaction decided: use `customer_id`, or create one for `generation`
    (first looking for one created since `look_since`), or wait (all None)."""

    customer_id: str | None = None
    generation: int | None = None
    look_since: datetime | None = None


def generation_filter(generation: int) -> Any:
    """Orgs stored before generations existed have none: that is generation 0."""
    return generation if generation else {"$in": [0, None]}


def claim(org: Org, *, holder: str, now: datetime, seconds: float) -> Plan[CustomerStep]:
    if org.stripe_customer_id:
        return Plan(CustomerStep(customer_id=org.stripe_customer_id))
    current = org.customer_claim
    if current is not None and current.holder not in (None, holder) and current.expires_at > now:
        return Plan(CustomerStep())  # another call is creating it
    generation = org.customer_generation
    again = current is not None and current.generation == generation
    first = current.first_claimed_at if current is not None and again else now
    guard: dict[str, Any] = {"_id": ObjectId(org.id), "stripe_customer_id": None,
                             "customer_generation": generation_filter(generation)}
    if current is None:
        guard["customer_claim"] = None
    else:
        guard["customer_claim.holder"] = current.holder
        guard["customer_claim.expires_at"] = current.expires_at
    expires = now + timedelta(seconds=seconds)
    taken = {"generation": generation, "holder": holder, "expires_at": expires,
             "first_claimed_at": first}
    step = CustomerStep(generation=generation, look_since=first if again else None)
    fields: dict[str, Any] = {"customer_claim": taken}
    if again:  # taken over: whatever the earlier call sent may still make a customer
        fields["customer_audit"] = _widened(org, first, expires)
    return Plan(step, [Write(schema.ORGS, "update_one", guard, {"$set": fields})])


def record(org: Org, *, generation: int, customer_id: str, now: datetime,
           contested_since: datetime | None = None) -> Plan[str | None]:
    """The org's customer after recording `customer_id`: another one when a concurrent caller
    recorded first, None when the generation moved on (the caller's customer is not wanted).
    A creation taken over (`contested_since`: its first claim) leaves an audit window in which
    reconciliation looks for extra customers."""
    if org.stripe_customer_id:
        return Plan(org.stripe_customer_id)
    if org.customer_generation != generation:
        return Plan(None)
    guard = {"_id": ObjectId(org.id), "stripe_customer_id": None,
             "customer_generation": generation_filter(generation)}
    fields: dict[str, Any] = {"stripe_customer_id": customer_id,
                              "customer_generation": generation, "customer_claim": None}
    if contested_since is not None:
        fields["customer_audit"] = _widened(org, contested_since, now)
    return Plan(customer_id, [Write(schema.ORGS, "update_one", guard, {"$set": fields})])


def audit(org: Org, *, since: datetime, until: datetime) -> list[Write]:
    """Widen the org's audit window: a customer made for it may be left in Stripe."""
    return [Write(schema.ORGS, "update_one", {"_id": ObjectId(org.id)},
                  {"$set": {"customer_audit": _widened(org, since, until)}})]


def _widened(org: Org, since: datetime, until: datetime) -> dict[str, datetime]:
    if org.customer_audit is not None:
        since, until = min(since, org.customer_audit.since), max(until, org.customer_audit.until)
    return {"since": since, "until": until}


def release(org: Org, *, holder: str) -> list[Write]:
    """Give up a claim after a failure, keeping its generation: the next call looks first."""
    current = org.customer_claim
    if org.stripe_customer_id or current is None or current.holder != holder:
        return []
    return [Write(schema.ORGS, "update_one",
                  {"_id": ObjectId(org.id), "customer_claim.holder": holder},
                  {"$set": {"customer_claim.holder": None}})]


def deleted(org: Org) -> Write:
    """The org's customer was deleted in Stripe: forget it; the next one is a new generation."""
    return Write(schema.ORGS, "update_one",
                 {"_id": ObjectId(org.id), "stripe_customer_id": org.stripe_customer_id},
                 {"$set": {"stripe_customer_id": None, "default_payment_method_id": None,
                           "customer_claim": None,
                           "customer_generation": org.customer_generation + 1}})
