"""Payment methods and customers, held against Stripe. Pure."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from bson import ObjectId

from billing.adapters import documents, schema
from billing.adapters.writes import Write, insert
from billing.domain.models import (
    Org,
    PaymentMethodStatus,
)
from billing.domain.payments import CardMethod, StripeCustomer
from billing.plans import Plan, events
from billing.plans.payment_methods import event_data
from billing.plans.reconciliation.repairs import (
    LIVE,
    Adopt,
    ClearDefault,
    DeleteExtraCustomer,
    DetachOrphan,
    FinishAttach,
    FinishDetach,
    ForgetCustomer,
    MarkGone,
    MethodRepair,
)
from billing.reconcile_findings import Check, Finding

Doc = dict[str, Any]


def _method_finding(org_id: Any, summary: str, action: str, repair: MethodRepair,
                    target: Any) -> Finding:
    return Finding(Check.PAYMENT_METHOD, str(org_id), summary, 1, [str(target)], action,
                   repair=repair)


def stripe_id_of(doc: Doc) -> str | None:
    """The Stripe id of a method; a pending one may only know what it was asked to attach
    (`source`, which is the Stripe id when the host passed a `pm_...` id)."""
    value = doc.get("stripe_id") or doc.get("source")
    return value if isinstance(value, str) else None


def default_finding(org: Org, live: Sequence[Doc]) -> list[Finding]:
    """The org's default, when it points to a method that is missing or not active."""
    default = org.default_payment_method_id
    by_id = {str(d["_id"]): d for d in live}
    if default is None or by_id.get(default, {}).get("status") == "active":
        return []
    return [_method_finding(org.id, f"default points to {default}, which is missing or not "
                            "active", "clear the default", ClearDefault(default), default)]


def customer_gone(org: Org) -> Finding:
    """The org's recorded Stripe customer no longer exists in Stripe."""
    customer = org.stripe_customer_id or ""
    return _method_finding(
        org.id, f"the org's Stripe customer {customer} no longer exists in Stripe",
        "forget it here as customer.deleted does (its methods detached, the default cleared)",
        ForgetCustomer(customer), customer)


def method_findings(org: Org, live: Sequence[Doc], attached: Mapping[str, CardMethod] | None,
                    stale_before: datetime) -> list[Finding]:
    """The org's live methods (pending, active, detaching) held against what Stripe has
    attached to its customer (`attached`; None when Stripe was not asked)."""
    out: list[Finding] = []
    for d in live:
        if d["status"] == "detaching":
            out.append(_method_finding(org.id, f"detach of {d['_id']} was interrupted",
                                       "detach in Stripe, mark detached",
                                       FinishDetach(d["_id"]), d["_id"]))
        elif d["status"] == "active" and attached is not None \
                and d.get("stripe_id") not in attached:
            out.append(_method_finding(org.id, f"{d['_id']} is active here but not attached "
                                       "in Stripe", "mark detached here", MarkGone(d["_id"]),
                                       d["_id"]))
        elif d["status"] == "pending" and d["created_at"] < stale_before:
            on_customer = attached is not None and stripe_id_of(d) in attached
            out.append(_method_finding(
                org.id, f"attach {d['_id']} was interrupted", "activate (attached in Stripe)"
                if on_customer else "mark failed, or adopt what Stripe attached",
                FinishAttach(d["_id"]), d["_id"]))
    known = {stripe_id_of(d) for d in live}
    for stripe_id in sorted((attached or {}).keys() - known):
        out.append(_method_finding(org.id, f"{stripe_id} is attached to the org's Stripe "
                                   "customer but unknown here", "adopt it (never detach what "
                                   "the org may use)", Adopt(stripe_id), stripe_id))
    return out


def made_by_billing(org: Org, customer: StripeCustomer) -> bool:
    """Whether billing made this customer for the org: our generation in its metadata (an
    `org_id` alone is a key other systems of the host may write too), one the org has had."""
    return customer.org_id == org.id and customer.generation is not None and \
        0 <= customer.generation <= org.customer_generation


def extra_customer(org: Org, customer_id: str, generation: Any, methods: int) -> Finding:
    """A Stripe customer our metadata says billing created for this org, not its current one:
    deleted when empty, left to a person when it has payment methods."""
    what = (f"Stripe customer {customer_id} was created by billing for this org (its "
            f"metadata says org {org.id}, generation {generation}) but is not "
            "the org's customer")
    if methods:
        return Finding(
            Check.PAYMENT_METHOD, org.id, f"{what}, and has {methods} payment "
            "methods attached", 1, [customer_id], "left for a person: detach its "
            "methods or delete it in Stripe", repairable=False)
    return _method_finding(org.id, f"{what} and has no payment methods",
                           "delete it in Stripe (irreversible; our metadata says billing "
                           "created it for this org)", DeleteExtraCustomer(customer_id),
                           customer_id)


def without_stripe(findings: Iterable[Finding]) -> list[Finding]:
    """Findings of a run without a gateway: those whose repair needs Stripe (an interrupted
    detach or attach, an orphan's detach) are reported for a run with one, not repaired."""
    return [dataclasses.replace(
        f, repairable=False, repair=None, action="report: repairing it needs Stripe; run "
        "reconciliation with a gateway (the CLI: set STRIPE_API_KEY)")
        if isinstance(f.repair, FinishDetach | FinishAttach | DetachOrphan) else f
        for f in findings]


def orphans(oid: ObjectId, live: Iterable[Doc]) -> list[Finding]:
    """Live methods of an org that no longer exists."""
    return [_method_finding(oid, f"{d['_id']} belongs to a deleted org", "detach in Stripe "
                            "(irreversible: no org owns it) and mark detached",
                            DetachOrphan(d["_id"]), d["_id"]) for d in live]


def detach_key(repair: FinishDetach | DetachOrphan, oid: ObjectId, method_id: Any) -> str:
    """The idempotency key of a detach in Stripe: an interrupted detach reuses the key
    detach() itself used."""
    if isinstance(repair, DetachOrphan):
        return f"reconcile-orphan:{method_id}"
    return f"pm-detach:{oid}:{method_id}"


def needs_stripe_detach(doc: Doc | None) -> bool:
    return doc is not None and doc["status"] in LIVE and bool(doc.get("stripe_id"))


def mark_detached(oid: ObjectId, method: Doc | None, org: Doc | None, now: datetime, *,
                  by: str, box: events.Outbox | None = None) -> list[Write] | None:
    """The method marked detached (guarded by the status read), the org's default cleared if
    it pointed to it, and `payment_method.detached` told (detached `by` billing or Stripe, as
    its webhook or `detach()` would have); None when the method is already settled."""
    if method is None or method["status"] not in LIVE:
        return None
    pid = method["_id"]
    writes = [Write(schema.PAYMENT_METHODS, "update_one",
                    {"_id": pid, "org_id": oid, "status": method["status"]},
                    {"$set": {"status": PaymentMethodStatus.DETACHED.value, "updated_at": now}})]
    if org is not None and org.get("default_payment_method_id") == str(pid):
        writes.append(Write(schema.ORGS, "update_one",
                            {"_id": oid, "default_payment_method_id": str(pid)},
                            {"$set": {"default_payment_method_id": None}}))
    if box is None:
        return writes
    return writes + events.emit(box, [("payment_method.detached", event_data(
        documents.payment_method(method), by=by, reason="found by reconciliation"))])


def clear_default(org: Org, current: Doc | None) -> list[Write]:
    """The org's default cleared, unless it is (again) an active method: `current` is the
    method it points to now."""
    default = org.default_payment_method_id
    if default is None or (current is not None and current["status"] == "active"):
        return []
    return [Write(schema.ORGS, "update_one",
                  {"_id": ObjectId(org.id), "default_payment_method_id": default},
                  {"$set": {"default_payment_method_id": None}})]


def adoption(oid: ObjectId, card: CardMethod, now: datetime) -> Plan[Doc]:
    """A record for a card Stripe shows on the org's customer and we do not know: inserted
    pending (the result), for `payment_methods.activate` to activate in the same writes."""
    new_id = ObjectId()
    doc = {"_id": new_id, "org_id": oid, "request_id": f"adopted:{card.id}:{new_id}",
           "source": card.id, "status": "pending", "created_at": now, "updated_at": now}
    return Plan(doc, [insert(schema.PAYMENT_METHODS, doc)])
