"""Reconciliation of payment methods with Stripe (policy in billing/reconcile_findings.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bson import ObjectId

from billing import faults
from billing._async.customers import CLOCK_SLACK_S
from billing._async.service_context import AsyncContext
from billing._async.unit_of_work import AsyncTransaction
from billing.adapters import documents, queries, schema
from billing.adapters.writes import Write, insert
from billing.domain.models import Org, PaymentMethodStatus
from billing.domain.payments import CardMethod
from billing.errors import PaymentMethodNotFound
from billing.plans import payment_methods as plans
from billing.plans import require_org
from billing.reconcile_findings import Check, Finding, in_shard

Doc = dict[str, Any]
S = PaymentMethodStatus
LIVE = ["pending", "active", "detaching"]


def _finding(org_id: Any, summary: str, action: str, repair: str, **params: Any) -> Finding:
    ids = [str(v) for v in params.values() if isinstance(v, ObjectId | str)][:2]
    return Finding(Check.PAYMENT_METHOD, str(org_id), summary, 1, ids, action,
                   params={"repair": repair, **params})


class AsyncMethodChecks:
    def __init__(self, ctx: AsyncContext) -> None:
        self._ctx = ctx

    async def scan(self, org: Org, stale_before: datetime) -> list[Finding]:
        oid = ObjectId(org.id)
        coll = self._ctx.uow.db[schema.PAYMENT_METHODS]
        docs = await coll.find({"org_id": oid, "status": {"$in": LIVE}}).to_list()
        by_id = {str(d["_id"]): d for d in docs}
        out: list[Finding] = []
        default = org.default_payment_method_id
        if default is not None and by_id.get(default, {}).get("status") != "active":
            out.append(_finding(oid, f"default points to {default}, which is missing or not "
                                "active", "clear the default", "clear_default", method=default))
        gateway = self._ctx.gateway_or_none
        attached: dict[str, CardMethod] | None = None
        if not org.stripe_customer_id:
            attached = {}  # no customer (deleted, or never made): nothing of it is usable
        elif gateway is not None:
            try:
                attached = {m.id: m for m in await gateway.list_payment_methods(
                    org.stripe_customer_id)}
            except PaymentMethodNotFound:  # deleted in Stripe, its event never processed
                out.append(_finding(
                    oid, f"the org's Stripe customer {org.stripe_customer_id} no longer exists "
                    "in Stripe", "forget it here as customer.deleted does (its methods "
                    "detached, the default cleared)", "customer_gone",
                    customer=org.stripe_customer_id))
                return out
        for d in docs:
            if d["status"] == "detaching":
                out.append(_finding(oid, f"detach of {d['_id']} was interrupted",
                                    "detach in Stripe, mark detached", "finish_detach",
                                    method=d["_id"]))
            elif d["status"] == "active" and attached is not None \
                    and d.get("stripe_id") not in attached:
                out.append(_finding(oid, f"{d['_id']} is active here but not attached in "
                                    "Stripe", "mark detached here", "gone", method=d["_id"]))
            elif d["status"] == "pending" and d["created_at"] < stale_before and (
                    attached is not None or d.get("stripe_id") is None):
                on_customer = attached is not None and _stripe_id(d) in attached
                out.append(_finding(
                    oid, f"attach {d['_id']} was interrupted", "activate (attached in Stripe)"
                    if on_customer else "mark failed, or adopt what Stripe attached",
                    "finish_attach", method=d["_id"]))
        known = {_stripe_id(d) for d in docs}
        for stripe_id in sorted((attached or {}).keys() - known):
            out.append(_finding(oid, f"{stripe_id} is attached to the org's Stripe customer but "
                                "unknown here", "adopt it (never detach what the org may use)",
                                "adopt", stripe_id=stripe_id))
        if gateway is not None:
            out += await self._extra_customers(org)
        return out

    async def _extra_customers(self, org: Org) -> list[Finding]:
        """Stripe customers our metadata says we created for this org, other than its current
        one, in the org's audit window (a creation taken over after a lost answer or a crash,
        or a customer made by a losing racer that could not be deleted). Empty ones are deleted;
        one with payment methods is left to a person. Orgs without a recorded customer are
        skipped: their next attach looks for and uses what an earlier claim created."""
        audit = org.customer_audit
        if audit is None or not org.stripe_customer_id:
            return []
        since = int(audit.since.timestamp()) - CLOCK_SLACK_S
        until = int(audit.until.timestamp()) + CLOCK_SLACK_S
        out = []
        for customer in await self._ctx.gateway.find_customers(
                org_id=org.id, created_since=since, created_until=until):
            if customer.id == org.stripe_customer_id:
                continue
            methods = await self._ctx.gateway.list_payment_methods(customer.id)
            what = (f"Stripe customer {customer.id} was created by billing for this org (its "
                    f"metadata says org {org.id}, generation {customer.generation}) but is not "
                    "the org's customer")
            if methods:
                out.append(Finding(
                    Check.PAYMENT_METHOD, org.id, f"{what}, and has {len(methods)} payment "
                    "methods attached", 1, [customer.id], "left for a person: detach its "
                    "methods or delete it in Stripe", repairable=False))
                continue
            out.append(_finding(org.id, f"{what} and has no payment methods",
                                "delete it in Stripe (irreversible; our metadata says billing "
                                "created it for this org)", "extra_customer",
                                customer=customer.id))
        return out

    async def orphans(self, *, shard: tuple[int, int] = (0, 1), only: ObjectId | None = None,
                      page: int = 1000) -> list[Finding]:
        """Live methods of orgs that no longer exist: the distinct org ids of payment methods
        (on the index), checked against `orgs` a page at a time."""
        db = self._ctx.uow.db
        coll = db[schema.PAYMENT_METHODS]
        candidates = [only] if only is not None else sorted(
            o for o in await coll.distinct("org_id", {"org_id": queries.ANY_OBJECT_ID})
            if in_shard(o, shard))
        out = []
        for start in range(0, len(candidates), page):
            chunk = candidates[start:start + page]
            alive = {d["_id"] for d in await db[schema.ORGS].find(
                {"_id": {"$in": chunk}}, {"_id": 1}).hint("_id_").to_list()}
            for oid in chunk:
                if oid in alive:
                    continue
                for d in await coll.find({"org_id": oid, "status": {"$in": LIVE}}).to_list():
                    out.append(_finding(
                        oid, f"{d['_id']} belongs to a deleted org", "detach in Stripe "
                        "(irreversible: no org owns it) and mark detached", "orphan",
                        method=d["_id"]))
        return out

    async def repair(self, finding: Finding) -> str:
        p, oid = finding.params, ObjectId(finding.org_id)
        repair = p["repair"]
        if repair in ("orphan", "finish_detach"):
            doc = await self._ctx.uow.db[schema.PAYMENT_METHODS].find_one(
                {"_id": p["method"], "org_id": oid}, hint="_id_")
            if doc is not None and doc["status"] in LIVE and doc.get("stripe_id"):
                key = f"reconcile-orphan:{doc['_id']}" if repair == "orphan" else \
                    f"pm-detach:{oid}:{doc['_id']}"  # the key detach() itself used
                await self._detach_in_stripe(doc["stripe_id"], key)
            return await self._ctx.uow.run(lambda txn: self._mark(txn, oid, p["method"],
                                                                  S.DETACHED))
        if repair == "extra_customer":
            return await self._delete_extra_customer(oid, p["customer"])
        if repair == "customer_gone":
            try:  # asked again just before forgetting it
                await self._ctx.gateway.list_payment_methods(p["customer"])
                return "exists in Stripe: kept"
            except PaymentMethodNotFound:
                pass
            return await self._ctx.uow.run(
                lambda txn: self._forget_customer(txn, oid, p["customer"]))
        if repair in ("finish_attach", "adopt"):
            # Stripe's view is read before the transaction: callbacks make no Stripe calls.
            org = require_org(await self._ctx.uow.db[schema.ORGS].find_one(
                {"_id": oid}, hint="_id_"), oid)
            attached: dict[str, CardMethod] = {}
            if org.stripe_customer_id:
                attached = {m.id: m for m in await self._ctx.gateway.list_payment_methods(
                    org.stripe_customer_id)}
            return await self._ctx.uow.run(
                lambda txn: self._attach_side(txn, oid, repair, p, attached))
        return await self._ctx.uow.run(lambda txn: self._local(txn, oid, repair, p))

    async def _forget_customer(self, txn: AsyncTransaction, oid: ObjectId,
                               customer: str) -> str:
        org = require_org(await txn.find_one(schema.ORGS, {"_id": oid}), oid)
        if org.stripe_customer_id != customer:
            return "already forgotten"
        methods = [documents.payment_method(d) for d in await txn.find(
            schema.PAYMENT_METHODS, {"org_id": oid, "status": {"$in": schema.LIVE_HOLDING}})]
        await txn.write(plans.customer_deleted(org, methods, self._ctx.now(),
                                               box=self._ctx.outbox(documents.org_doc(org))))
        return f"forgotten; {len(methods)} methods marked detached"

    async def _delete_extra_customer(self, oid: ObjectId, customer_id: str) -> str:
        """Checked again just before: the org still has another customer recorded (so no
        attach will take this one over), and this one still has no payment methods."""
        org = require_org(await self._ctx.uow.db[schema.ORGS].find_one(
            {"_id": oid}, hint="_id_"), oid)
        if org.stripe_customer_id in (None, customer_id):
            return "in use, or the org's next customer: kept"
        if await self._ctx.gateway.list_payment_methods(customer_id):
            return "payment methods attached meanwhile: kept"
        await self._ctx.gateway.delete_customer(
            customer_id, idempotency_key=f"reconcile-customer:{oid}:{customer_id}")
        return "deleted in Stripe"

    async def _detach_in_stripe(self, stripe_id: str, key: str) -> None:
        try:
            await self._ctx.gateway.detach(stripe_id, idempotency_key=key)
        except PaymentMethodNotFound:
            pass
        faults.hit("reconcile.methods.after_stripe")

    async def _mark(self, txn: AsyncTransaction, oid: ObjectId, pid: Any,
                    status: PaymentMethodStatus) -> str:
        org_doc = await txn.find_one(schema.ORGS, {"_id": oid})
        doc = await txn.find_one(schema.PAYMENT_METHODS, {"_id": pid, "org_id": oid})
        if doc is None or doc["status"] not in LIVE:
            return "already settled"
        writes = [Write(schema.PAYMENT_METHODS, "update_one",
                        {"_id": pid, "org_id": oid, "status": doc["status"]},
                        {"$set": {"status": status.value, "updated_at": self._ctx.now()}})]
        if org_doc is not None and org_doc.get("default_payment_method_id") == str(pid):
            writes.append(Write(schema.ORGS, "update_one",
                                {"_id": oid, "default_payment_method_id": str(pid)},
                                {"$set": {"default_payment_method_id": None}}))
        await txn.write(writes)
        faults.hit("reconcile.methods.after_write")
        return f"marked {status.value}"

    async def _local(self, txn: AsyncTransaction, oid: ObjectId, repair: str, p: Doc) -> str:
        org = require_org(await txn.find_one(schema.ORGS, {"_id": oid}), oid)
        if repair == "clear_default":
            current = org.default_payment_method_id
            doc = await txn.find_one(schema.PAYMENT_METHODS,
                                     {"_id": ObjectId(current), "org_id": oid}) if current else None
            if current is None or (doc is not None and doc["status"] == "active"):
                return "already consistent"
            await txn.write([Write(schema.ORGS, "update_one",
                                   {"_id": oid, "default_payment_method_id": current},
                                   {"$set": {"default_payment_method_id": None}})])
            return "default cleared"
        return await self._mark(txn, oid, p["method"], S.DETACHED)  # "gone"

    async def _attach_side(self, txn: AsyncTransaction, oid: ObjectId, repair: str, p: Doc,
                           attached: dict[str, CardMethod]) -> str:
        """Finish a pending attach, or adopt a method Stripe shows on the org's customer."""
        org = require_org(await txn.find_one(schema.ORGS, {"_id": oid}), oid)
        now = self._ctx.now()
        if repair == "finish_attach":
            doc = await txn.find_one(schema.PAYMENT_METHODS, {"_id": p["method"], "org_id": oid})
            if doc is None or doc["status"] != "pending":
                return "already settled"
            pending = documents.payment_method(doc)
            card = attached.get(_stripe_id(doc) or "")
            if card is None:
                await txn.write(plans.fail(oid, pending, "not attached in Stripe", now))
                return "marked failed"
            done = plans.activate(org, pending, card, make_default=False, now=now,
                                  holder=await self._holder(txn, oid, card.id),
                                  box=self._ctx.outbox(documents.org_doc(org)))
            await txn.write(done.writes)
            return "activated" if done.result.failure is None and \
                done.result.method.id == pending.id else "marked failed"
        card = attached.get(p["stripe_id"])
        if card is None:
            return "no longer attached"
        if any(d["status"] in LIVE for d in await txn.find(
                schema.PAYMENT_METHODS, {"org_id": oid, "stripe_id": card.id},
                hint="stripe_id")):
            return "already known"
        # A concurrent adoption (overlapping shards) inserts the same card: the unique index
        # on live records makes one of the two transactions retry and find it known.
        new_id = ObjectId()
        doc = {"_id": new_id, "org_id": oid, "request_id": f"adopted:{card.id}:{new_id}",
               "source": card.id, "status": "pending", "created_at": now, "updated_at": now}
        pending = documents.payment_method(doc)
        done = plans.activate(org, pending, card, make_default=False, now=now,
                              box=self._ctx.outbox(documents.org_doc(org)))
        await txn.write([insert(schema.PAYMENT_METHODS, doc), *done.writes])
        return f"adopted as {doc['_id']}"

    async def _holder(self, txn: AsyncTransaction, oid: ObjectId, stripe_id: str) -> Doc | None:
        return await txn.find_one(schema.PAYMENT_METHODS, {
            "org_id": oid, "stripe_id": stripe_id, "status": {"$in": schema.LIVE_HOLDING}})


def _stripe_id(doc: Doc) -> str | None:
    """The Stripe id of a method; a pending one may only know what it was asked to attach
    (`source`, which is the Stripe id when the host passed a `pm_...` id)."""
    value = doc.get("stripe_id") or doc.get("source")
    return value if isinstance(value, str) else None
