# Generated from billing/_async by tools/synchro.py: do not edit.
"""Payment methods of an org."""

from __future__ import annotations

from typing import Any

from bson import ObjectId

from billing._sync.unit_of_work import Direct, Transaction
from billing.adapters import documents, queries, schema
from billing.domain.models import PaymentMethod, PaymentMethodStatus
from billing.plans.reconciliation import LIVE

Doc = dict[str, Any]


def method_doc_in(txn: Transaction, org_id: ObjectId,
                        method_id: ObjectId) -> Doc | None:
    return txn.find_one(schema.PAYMENT_METHODS, {"_id": method_id, "org_id": org_id})


def method_doc_of_request(txn: Transaction, org_id: ObjectId,
                                request_id: str) -> Doc | None:
    """The record an attach request made (unique per org and request id), or None."""
    return txn.find_one(schema.PAYMENT_METHODS, {"org_id": org_id,
                                                       "request_id": request_id})


def method_doc_holding(txn: Transaction, org_id: ObjectId,
                             stripe_id: str) -> Doc | None:
    """The org's live record (active or detaching) holding the Stripe method, if any (at most
    one: unique index). The index is named: SecantusDB scans the collection when `status`
    joins the indexed fields."""
    return txn.find_one(schema.PAYMENT_METHODS, {
        "org_id": org_id, "stripe_id": stripe_id, "status": {"$in": schema.LIVE_HOLDING}},
        hint="stripe_id")


def detached_method_doc(txn: Transaction, org_id: ObjectId,
                              stripe_id: str) -> Doc | None:
    """A record of the org that held the Stripe method and was detached, if any (Stripe
    never attaches a detached payment method again). On the index, as method_doc_holding."""
    return txn.find_one(schema.PAYMENT_METHODS, {
        "org_id": org_id, "stripe_id": stripe_id,
        "status": PaymentMethodStatus.DETACHED.value}, hint="stripe_id")


def live_method_docs(txn: Transaction, org_id: ObjectId, *,
                           stripe_id: str | None = None) -> list[Doc]:
    """The org's methods attached or being detached (only those of `stripe_id`, if given)."""
    where: Doc = {"org_id": org_id, "status": {"$in": schema.LIVE_HOLDING}}
    if stripe_id is None:
        return txn.find(schema.PAYMENT_METHODS, where)
    return txn.find(schema.PAYMENT_METHODS, {**where, "stripe_id": stripe_id},
                          hint="stripe_id")  # see method_doc_holding


def active_method_docs_now(direct: Direct, org_id: ObjectId) -> list[Doc]:
    """The org's active methods as committed now, oldest first."""
    return direct.find(schema.PAYMENT_METHODS, {
        "org_id": org_id, "status": PaymentMethodStatus.ACTIVE.value})


def live_methods_of_org(direct: Direct, org_id: ObjectId) -> list[Doc]:
    """The org's methods that still hold a card: pending, active, detaching."""
    return direct.find(schema.PAYMENT_METHODS,
                             {"org_id": org_id, "status": {"$in": LIVE}}, sort=())


def org_ids_with_methods(direct: Direct) -> list[Any]:
    """The distinct org ids of payment methods, on the index."""
    return direct.distinct(schema.PAYMENT_METHODS, "org_id",
                                 {"org_id": queries.ANY_OBJECT_ID})


def org_has_methods(direct: Direct, org_id: ObjectId) -> bool:
    return bool(direct.find(schema.PAYMENT_METHODS, {"org_id": org_id}, sort=(),
                                  limit=1, projection={"_id": 1}))


def method_of_org(direct: Direct, org_id: ObjectId, method_id: Any) -> Doc | None:
    found = direct.find(schema.PAYMENT_METHODS, {"_id": method_id, "org_id": org_id},
                              sort=(), limit=1, hint="_id_")
    return found[0] if found else None


def method_in_txn(txn: Transaction, org_id: ObjectId, method_id: Any) -> Doc | None:
    return txn.find_one(schema.PAYMENT_METHODS, {"_id": method_id, "org_id": org_id})


def holding_methods_in_txn(txn: Transaction, org_id: ObjectId
                                 ) -> list[PaymentMethod]:
    """The org's methods attached in Stripe as far as we know (active, detaching)."""
    return [documents.payment_method(d) for d in txn.find(
        schema.PAYMENT_METHODS, {"org_id": org_id, "status": {"$in": schema.LIVE_HOLDING}})]


def card_known_in_txn(txn: Transaction, org_id: ObjectId, stripe_id: str) -> bool:
    """Whether a live method (pending, active, detaching) of the org has this Stripe card, or
    a pending one was asked to attach it (`source`: its attach may be in flight)."""
    return any(d["status"] in LIVE for d in txn.find(
        schema.PAYMENT_METHODS, {"org_id": org_id, "stripe_id": stripe_id}, hint="stripe_id")
    ) or pending_attach_of(txn, org_id, stripe_id)


def pending_attach_of(txn: Transaction, org_id: ObjectId, stripe_id: str) -> bool:
    """Whether a pending method of the org holds this Stripe card or was asked to attach it.
    Read on the org's status index (`source` is no key of one); pending methods are few."""
    return any(stripe_id in (d.get("stripe_id"), d.get("source")) for d in txn.find(
        schema.PAYMENT_METHODS, {"org_id": org_id, "status": PaymentMethodStatus.PENDING.value},
        hint="status"))
