"""The pure decisions behind the org's Stripe customer and an attach's activation."""

from __future__ import annotations

from datetime import timedelta

import pytest
from bson import ObjectId

from billing.domain.models import CustomerClaim, PaymentMethod, PaymentMethodStatus
from billing.domain.payments import CardMethod
from billing.errors import InvalidTransition
from billing.plans import customers
from billing.plans import payment_methods as plans
from tests.unit.factories import NOW, oid, org

S = PaymentMethodStatus


def claimed(holder: str | None, *, generation: int = 0, expires_in: float = 30) -> CustomerClaim:
    return CustomerClaim(generation=generation, holder=holder,
                         expires_at=NOW + timedelta(seconds=expires_in),
                         first_claimed_at=NOW - timedelta(minutes=1))


def method(owner_id: str, status: S = S.PENDING, **fields: object) -> PaymentMethod:
    return PaymentMethod.model_validate({"id": oid(), "org_id": owner_id, "request_id": "r",
                                         "status": status, "created_at": NOW, **fields})


def test_a_first_claim_creates_without_looking_and_guards_on_no_claim() -> None:
    plan = customers.claim(org(), holder="h1", now=NOW, seconds=30)
    assert plan.result == customers.CustomerStep(generation=0)
    (write,) = plan.writes
    assert write.filter["customer_claim"] is None and write.filter["stripe_customer_id"] is None
    assert write.doc["$set"]["customer_claim"]["holder"] == "h1"


def test_a_live_claim_of_another_call_means_wait_and_writes_nothing() -> None:
    owner = org().model_copy(update={"customer_claim": claimed("other")})
    plan = customers.claim(owner, holder="h1", now=NOW, seconds=30)
    assert plan.result == customers.CustomerStep() and plan.writes == []


@pytest.mark.parametrize("claim", [claimed("dead", expires_in=-1), claimed(None)])
def test_taking_over_a_claim_of_the_same_generation_looks_first(claim: CustomerClaim) -> None:
    owner = org().model_copy(update={"customer_claim": claim})
    plan = customers.claim(owner, holder="h1", now=NOW, seconds=30)
    assert plan.result.generation == 0 and plan.result.look_since == claim.first_claimed_at
    assert plan.writes[0].filter["customer_claim.holder"] == claim.holder


def test_an_org_with_a_customer_needs_no_claim() -> None:
    owner = org().model_copy(update={"stripe_customer_id": "cus_1"})
    assert customers.claim(owner, holder="h", now=NOW, seconds=30).result.customer_id == "cus_1"


def test_recording_keeps_a_customer_recorded_first_and_drops_an_old_generation() -> None:
    owner = org().model_copy(update={"stripe_customer_id": "cus_1"})
    assert customers.record(owner, generation=0, customer_id="cus_2", now=NOW).result == "cus_1"
    moved = org().model_copy(update={"customer_generation": 2})
    assert customers.record(moved, generation=1, customer_id="cus_2", now=NOW).result is None
    plan = customers.record(org(), generation=0, customer_id="cus_2", now=NOW)
    assert plan.result == "cus_2"
    assert plan.writes[0].doc["$set"]["customer_claim"] is None
    assert "customer_audit" not in plan.writes[0].doc["$set"]


def test_a_creation_taken_over_leaves_an_audit_window_for_reconciliation() -> None:
    first = NOW - timedelta(hours=2)
    plan = customers.record(org(), generation=0, customer_id="cus_2", now=NOW,
                            contested_since=first)
    assert plan.writes[0].doc["$set"]["customer_audit"] == {"since": first, "until": NOW}


def test_a_deleted_customer_moves_the_generation_on() -> None:
    owner = org().model_copy(update={"stripe_customer_id": "cus_1", "customer_generation": 3})
    write = customers.deleted(owner)
    assert write.filter["stripe_customer_id"] == "cus_1"
    assert write.doc["$set"]["customer_generation"] == 4
    assert write.doc["$set"]["default_payment_method_id"] is None


def test_release_only_gives_up_our_own_claim() -> None:
    owner = org().model_copy(update={"customer_claim": claimed("other")})
    assert customers.release(owner, holder="h1") == []
    mine = org().model_copy(update={"customer_claim": claimed("h1")})
    assert customers.release(mine, holder="h1")[0].doc == {"$set": {"customer_claim.holder": None}}


def test_activation_refuses_a_card_on_a_customer_that_is_no_longer_the_orgs() -> None:
    owner = org().model_copy(update={"stripe_customer_id": "cus_new"})
    pending = method(owner.id)
    card = CardMethod(id="pm_1", customer_id="cus_old")
    plan = plans.activate(owner, pending, card, make_default=True, now=NOW)
    assert plan.result.failure and plan.result.undo
    assert [w.doc["$set"]["status"] for w in plan.writes] == ["failed"]


def test_activation_of_a_card_held_by_another_record_returns_that_record() -> None:
    owner = org().model_copy(update={"stripe_customer_id": "cus_1"})
    held = {"_id": ObjectId(), "org_id": ObjectId(owner.id), "request_id": "r-0",
            "status": "active", "stripe_id": "pm_1", "customer_id": "cus_1", "created_at": NOW}
    plan = plans.activate(owner, method(owner.id), CardMethod(id="pm_1", customer_id="cus_1"),
                          make_default=False, now=NOW, holder=held)
    assert plan.result.method.id == str(held["_id"]) and not plan.result.undo
    assert plan.writes[0].doc["$set"]["duplicate_of"] == str(held["_id"])


def test_set_default_writes_the_method_so_a_concurrent_detach_conflicts() -> None:
    owner = org().model_copy(update={"stripe_customer_id": "cus_1"})
    active = method(owner.id, S.ACTIVE, stripe_id="pm_1", customer_id="cus_1")
    touch, default = plans.set_default(owner, active).writes
    assert touch.filter["status"] == "active" and touch.doc == {"$inc": {"version": 1}}
    assert default.doc == {"$set": {"default_payment_method_id": active.id}}
    other = method(owner.id, S.ACTIVE, stripe_id="pm_2", customer_id="cus_0")
    with pytest.raises(InvalidTransition):
        plans.set_default(owner, other)
