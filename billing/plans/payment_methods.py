"""Plans for payment methods: begin, activate, fail, detach and choose the default.

Order of steps (the services follow it) so that a crash never leaves an org pointing at a
detached or missing method: attach in Stripe before the default is set locally; clear the
default locally before detaching in Stripe.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bson import ObjectId

from billing.adapters import documents, schema
from billing.adapters.writes import Write, insert
from billing.domain.models import Org, PaymentMethod, PaymentMethodStatus
from billing.domain.payments import CardMethod
from billing.errors import InvalidInput, InvalidTransition, PaymentError, PaymentMethodNotFound
from billing.plans import Doc, Plan, customers, events

S = PaymentMethodStatus


def require_method(doc: Doc | None, org_id: ObjectId, pm_id: ObjectId) -> PaymentMethod:
    if doc is None:
        raise PaymentMethodNotFound(f"no payment method {pm_id} in org {org_id}")
    return documents.payment_method(doc)


def begin_attach(
    org: Org, existing: Doc | None, *, source: str, request_id: str, now: datetime,
    original: Doc | None = None, make_default: bool = False,
) -> Plan[PaymentMethod]:
    """A pending record keyed by (org, request_id): a repeat finds it instead of attaching
    twice. A repeat of a request that already failed says so; of one that found the card already
    attached here (`original`, still active), returns that method. The record keeps
    `make_default`, so reconciliation finishing an interrupted attach does what it asked."""
    if existing is not None:
        method = documents.payment_method(existing)
        if existing.get("source") != source:
            raise InvalidInput(
                f"request_id {request_id!r} was used for another payment method: "
                "use a new request_id for a new attach"
            )
        if method.status is S.FAILED and original is not None \
                and original.get("status") == S.ACTIVE.value:
            return Plan(documents.payment_method(original))
        if method.status is S.FAILED:
            raise PaymentError(
                f"attach request {request_id!r} failed earlier ({existing.get('failure')}): "
                "use a new request_id to try again"
            )
        return Plan(method)
    doc: Doc = {"_id": ObjectId(), "org_id": ObjectId(org.id), "request_id": request_id,
                "source": source, "status": S.PENDING.value, "make_default": make_default,
                "created_at": now, "updated_at": now}
    return Plan(documents.payment_method(doc), [insert(schema.PAYMENT_METHODS, doc)])


RETRY = "use a new request_id to try again"
NEW_METHOD = ("Stripe never attaches a detached payment method again: attach a new payment "
              "method")


@dataclass(frozen=True)
class Activation:
    """What an attach's activation decided. `undo`: the card this call attached in Stripe is
    held by no record here, detach it; `failure`: the attach failed (the record says why);
    `advice`: what the caller can do then, when `failure` does not say it."""

    method: PaymentMethod
    undo: bool = False
    failure: str | None = None
    advice: str | None = RETRY


def activate(
    org: Org, pending: PaymentMethod, card: CardMethod, *, make_default: bool, now: datetime,
    holder: Doc | None = None, detached: Doc | None = None, box: events.Outbox | None = None,
) -> Plan[Activation]:
    """pending -> active with Stripe's details; becomes the default when asked or when the org
    has none. `holder` is the live record already holding `card` (at most one: unique index).
    Refused (the record fails) when the card is attached to a customer that is no longer the
    org's (deleted meanwhile) or another record holds the card; an active holder is the
    method the attach returns, made the default when asked. Refused too when no record holds
    the card but `detached` (a record of the org that held it) is: Stripe detached it for good
    after answering this attach (a detach that ran meanwhile)."""
    unwanted = holder is None
    if pending.status is S.ACTIVE:
        return Plan(Activation(pending, undo=unwanted))
    if pending.status is not S.PENDING:
        return Plan(Activation(pending, undo=unwanted,
                               failure=f"the attach is {pending.status.value}"))
    if holder is not None:
        other = documents.payment_method(holder)
        if other.status is S.ACTIVE:
            reason = f"the card is already attached as payment method {other.id}"
            writes = _failed(org, pending, reason, now, other.id)
            if make_default:
                writes += set_default(org, other).writes
            return Plan(Activation(other), writes)
        reason = f"the card is being detached as payment method {other.id}; {NEW_METHOD}"
        return Plan(Activation(pending, failure=reason, advice=None),
                    _failed(org, pending, reason, now))
    if detached is not None:
        gone = documents.payment_method(detached)
        reason = f"the card was detached as payment method {gone.id}; {NEW_METHOD}"
        return Plan(Activation(pending, undo=True, failure=reason, advice=None),
                    _failed(org, pending, reason, now))
    if card.customer_id is None or card.customer_id != org.stripe_customer_id:
        reason = (f"the card was attached to Stripe customer {card.customer_id}, which is no "
                  "longer the org's (deleted meanwhile)")
        return Plan(Activation(pending, undo=True, failure=reason),
                    _failed(org, pending, reason, now))
    fields: Doc = {"status": S.ACTIVE.value, "stripe_id": card.id, "customer_id": card.customer_id,
                   "brand": card.brand, "last4": card.last4, "exp_month": card.exp_month,
                   "exp_year": card.exp_year, "updated_at": now}
    writes = [Write(schema.PAYMENT_METHODS, "update_one",
                    {"_id": ObjectId(pending.id), "org_id": ObjectId(org.id), "status": "pending"},
                    {"$set": fields})]
    # The org is always written, guarded by its customer: a concurrent customer.deleted (which
    # writes the org) conflicts with this transaction instead of missing the new method.
    default = pending.id if make_default or org.default_payment_method_id is None \
        else org.default_payment_method_id
    writes.append(Write(schema.ORGS, "update_one", {
        "_id": ObjectId(org.id), "default_payment_method_id": org.default_payment_method_id,
        "stripe_customer_id": card.customer_id,
    }, {"$set": {"default_payment_method_id": default}, "$inc": {"methods_version": 1}}))
    active = pending.model_copy(update={**fields, "status": S.ACTIVE})
    writes += events.emit(box, [("payment_method.attached", event_data(active,
                                                                        default=default))])
    return Plan(Activation(active), writes)


def event_data(method: PaymentMethod, **extra: object) -> dict[str, object]:
    """What a payment-method event tells the host: ids and card brand/last4, never a number."""
    return {"payment_method_id": method.id, "stripe_id": method.stripe_id, "brand": method.brand,
            "last4": method.last4, **extra}


def _failed(org: Org, pending: PaymentMethod, reason: str, now: datetime,
            duplicate_of: str | None = None) -> list[Write]:
    fields: Doc = {"status": S.FAILED.value, "failure": reason[:300], "updated_at": now}
    if duplicate_of is not None:
        fields["duplicate_of"] = duplicate_of
    return [Write(schema.PAYMENT_METHODS, "update_one",
                  {"_id": ObjectId(pending.id), "org_id": ObjectId(org.id), "status": "pending"},
                  {"$set": fields})]


def fail(org_id: ObjectId, pending: PaymentMethod, reason: str, now: datetime) -> list[Write]:
    return [Write(schema.PAYMENT_METHODS, "update_one",
                  {"_id": ObjectId(pending.id), "org_id": org_id, "status": "pending"},
                  {"$set": {"status": S.FAILED.value, "failure": reason[:300],
                            "updated_at": now}})]


def record_stripe_id(org_id: ObjectId, pending: PaymentMethod, stripe_id: str, now: datetime
                     ) -> list[Write]:
    """Remember what Stripe attached, so reconciliation can finish or undo a pending attach."""
    return [Write(schema.PAYMENT_METHODS, "update_one",
                  {"_id": ObjectId(pending.id), "org_id": org_id, "status": "pending"},
                  {"$set": {"stripe_id": stripe_id, "updated_at": now}})]


def begin_detach(org: Org, method: PaymentMethod, now: datetime) -> Plan[PaymentMethod]:
    """active -> detaching, clearing the org's default first if it is this method."""
    if method.status in (S.DETACHING, S.DETACHED):
        return Plan(method)
    if method.status is not S.ACTIVE:
        raise InvalidTransition(
            f"payment method {method.id} is {method.status.value}: only active ones detach")
    writes = [Write(schema.PAYMENT_METHODS, "update_one",
                    {"_id": ObjectId(method.id), "org_id": ObjectId(org.id), "status": "active"},
                    {"$set": {"status": S.DETACHING.value, "updated_at": now}})]
    if org.default_payment_method_id == method.id:
        writes.append(_set_default(org, None))
    return Plan(method.model_copy(update={"status": S.DETACHING}), writes)


def finish_detach(org_id: ObjectId, method: PaymentMethod, now: datetime, *,
                  box: events.Outbox | None = None) -> Plan[PaymentMethod]:
    if method.status is S.DETACHED:
        return Plan(method)
    return Plan(method.model_copy(update={"status": S.DETACHED}), [Write(
        schema.PAYMENT_METHODS, "update_one",
        {"_id": ObjectId(method.id), "org_id": org_id, "status": "detaching"},
        {"$set": {"status": S.DETACHED.value, "updated_at": now, "detached_at": now}}),
        *events.emit(box, [("payment_method.detached", event_data(method, by="billing"))])])


def set_default(org: Org, method: PaymentMethod) -> Plan[Org]:
    """The org's default, only on an active method attached to the org's current customer.
    The method is written too (its `version`), so a concurrent detach, which writes the method,
    conflicts with this transaction instead of both committing."""
    if method.status is not S.ACTIVE:
        raise InvalidTransition(
            f"payment method {method.id} is {method.status.value}: only an active one can be "
            "the default")
    if method.customer_id != org.stripe_customer_id:
        raise InvalidTransition(
            f"payment method {method.id} is attached to Stripe customer {method.customer_id}, "
            "which is not the org's: attach the card again")
    updated = org.model_copy(update={"default_payment_method_id": method.id})
    if org.default_payment_method_id == method.id:
        return Plan(updated)
    touch = Write(schema.PAYMENT_METHODS, "update_one",
                  {"_id": ObjectId(method.id), "org_id": ObjectId(org.id), "status": "active"},
                  {"$inc": {"version": 1}})
    return Plan(updated, [touch, _set_default(org, method.id)])


def _set_default(org: Org, method_id: str | None) -> Write:
    """Guarded by the default read, so two concurrent changes cannot both apply blindly."""
    current = {"_id": ObjectId(org.id), "default_payment_method_id": org.default_payment_method_id}
    return Write(schema.ORGS, "update_one", current,
                 {"$set": {"default_payment_method_id": method_id}})


def detached_in_stripe(org: Org, method: PaymentMethod, now: datetime, *,
                       box: events.Outbox | None = None) -> Plan[PaymentMethod]:
    """Stripe reports the method detached (by someone else): it is no longer usable here."""
    if method.status in (S.DETACHED, S.FAILED, S.PENDING):
        return Plan(method)
    writes = [Write(schema.PAYMENT_METHODS, "update_one",
                    {"_id": ObjectId(method.id), "org_id": ObjectId(org.id),
                     "status": method.status.value},
                    {"$set": {"status": S.DETACHED.value, "updated_at": now, "detached_at": now}})]
    if org.default_payment_method_id == method.id:
        writes.append(_set_default(org, None))
    writes += events.emit(box, [("payment_method.detached", event_data(method, by="stripe"))])
    return Plan(method.model_copy(update={"status": S.DETACHED}), writes)


def customer_deleted(org: Org, methods: list[PaymentMethod], now: datetime, *,
                     box: events.Outbox | None = None) -> list[Write]:
    """The org's Stripe customer is gone, and with it every attachment."""
    writes = [customers.deleted(org)]
    told = []
    for method in methods:
        plan = detached_in_stripe(org.model_copy(update={"default_payment_method_id": None}),
                                  method, now)
        writes += plan.writes
        if plan.writes:
            told.append(("payment_method.detached",
                         event_data(method, by="stripe", reason="customer deleted")))
    return writes + events.emit(box, told)
