"""Reconciliation of payment methods with Stripe (policy in billing/plans/reconciliation).

Stripe's view is read before any transaction (callbacks make no Stripe calls); each repair
reads again in its own transaction and writes what the plan decides from that snapshot.
"""

from __future__ import annotations

from datetime import datetime
from functools import partial

from bson import ObjectId

from billing import faults
from billing._async.customers import CLOCK_SLACK_S
from billing._async.repositories.orgs import existing_org_ids, org_document, org_in_txn
from billing._async.repositories.payment_methods import (
    card_known_in_txn,
    holding_methods_in_txn,
    live_methods_of_org,
    method_doc_holding,
    method_in_txn,
    method_of_org,
    org_ids_with_methods,
)
from billing._async.service_context import AsyncContext
from billing._async.unit_of_work import AsyncTransaction
from billing.adapters import documents
from billing.domain.models import Org
from billing.domain.payments import CardMethod
from billing.errors import PaymentMethodNotFound
from billing.plans import payment_methods as plans
from billing.plans import reconciliation as plan
from billing.plans import require_org
from billing.reconcile_findings import Finding, in_shard


class AsyncMethodChecks:
    def __init__(self, ctx: AsyncContext) -> None:
        self._ctx = ctx

    async def scan(self, org: Org, stale_before: datetime) -> list[Finding]:
        oid = ObjectId(org.id)
        live = await live_methods_of_org(self._ctx.uow.direct, oid)
        # The org read again after its methods: the run's page of orgs may predate an attach
        # that has since made the org's customer and a method (methods read with an older
        # customer looked detached in Stripe). What an attach finishes after this read shows
        # as a card to adopt, which the repair finds known.
        org = require_org(await org_document(self._ctx.uow.direct, oid), oid)
        out = plan.default_finding(org, live)
        gateway = self._ctx.gateway_or_none
        attached: dict[str, CardMethod] | None = None
        if not org.stripe_customer_id:
            attached = {}  # no customer (deleted, or never made): nothing of it is usable
        elif gateway is not None:
            try:
                attached = {m.id: m for m in await gateway.list_payment_methods(
                    org.stripe_customer_id)}
            except PaymentMethodNotFound:  # deleted in Stripe, its event never processed
                return [*out, plan.customer_gone(org)]
        out += plan.method_findings(org, live, attached, stale_before)
        if gateway is None:
            return plan.without_stripe(out)
        return out + await self._extra_customers(org)

    async def _extra_customers(self, org: Org) -> list[Finding]:
        """Stripe customers our metadata says we created for this org, other than its current
        one, in the org's audit window (a creation taken over after a lost answer or a crash,
        or a customer made by a losing racer that could not be deleted). Orgs without a
        recorded customer are skipped: their next attach looks for and uses what an earlier
        claim created."""
        audit = org.customer_audit
        if audit is None or not org.stripe_customer_id:
            return []
        since = int(audit.since.timestamp()) - CLOCK_SLACK_S
        until = int(audit.until.timestamp()) + CLOCK_SLACK_S
        out = []
        for customer in await self._ctx.gateway.find_customers(
                org_id=org.id, created_since=since, created_until=until):
            if customer.id == org.stripe_customer_id or not plan.made_by_billing(org, customer):
                continue  # the current one, or another system's customer naming this org
            methods = await self._ctx.gateway.list_payment_methods(customer.id)
            out.append(plan.extra_customer(org, customer.id, customer.generation, len(methods)))
        return out

    async def orphans(self, *, shard: tuple[int, int] = (0, 1), only: ObjectId | None = None,
                      page: int = 1000) -> list[Finding]:
        """Live methods of orgs that no longer exist: the distinct org ids of payment methods
        (on the index), checked against `orgs` a page at a time."""
        direct = self._ctx.uow.direct
        candidates = [only] if only is not None else sorted(
            o for o in await org_ids_with_methods(direct) if in_shard(o, shard))
        out = []
        for start in range(0, len(candidates), page):
            chunk = candidates[start:start + page]
            alive = await existing_org_ids(direct, chunk)
            for oid in chunk:
                if oid not in alive:
                    out += plan.orphans(oid, await live_methods_of_org(direct, oid))
        return out if self._ctx.gateway_or_none is not None else plan.without_stripe(out)

    # ---- repairs -------------------------------------------------------------------------------

    async def repair(self, repair: plan.MethodRepair, org_id: str) -> str:
        oid = ObjectId(org_id)
        run = self._ctx.uow.run
        match repair:
            case plan.DetachOrphan(method=pid) | plan.FinishDetach(method=pid):
                doc = await method_of_org(self._ctx.uow.direct, oid, pid)
                if doc is not None and plan.needs_stripe_detach(doc):
                    await self._detach_in_stripe(doc["stripe_id"],
                                                 plan.detach_key(repair, oid, doc["_id"]))
                return await run(partial(self._mark_detached, oid=oid, pid=pid, by="billing"))
            case plan.DeleteExtraCustomer(customer=customer):
                return await self._delete_extra_customer(oid, customer)
            case plan.ForgetCustomer(customer=customer):
                try:  # asked again just before forgetting it
                    await self._ctx.gateway.list_payment_methods(customer)
                    return "exists in Stripe: kept"
                except PaymentMethodNotFound:
                    pass
                return await run(partial(self._forget_customer, oid=oid, customer=customer))
            case plan.FinishAttach() | plan.Adopt():
                # Stripe's view is read before the transaction: callbacks make no Stripe calls.
                org = require_org(await org_document(self._ctx.uow.direct, oid), oid)
                attached: dict[str, CardMethod] = {}
                if org.stripe_customer_id:
                    attached = {m.id: m for m in await self._ctx.gateway.list_payment_methods(
                        org.stripe_customer_id)}
                if isinstance(repair, plan.FinishAttach):
                    return await run(partial(self._finish_attach, oid=oid, pid=repair.method,
                                             attached=attached))
                return await run(partial(self._adopt, oid=oid, card=attached.get(
                    repair.stripe_id)))
            case plan.ClearDefault():
                return await run(partial(self._clear_default, oid=oid))
            case plan.MarkGone(method=pid):
                # Asked again just before: still not attached to the org's current customer.
                org = require_org(await org_document(self._ctx.uow.direct, oid), oid)
                doc = await method_of_org(self._ctx.uow.direct, oid, pid)
                if org.stripe_customer_id and doc is not None and doc.get("stripe_id") in {
                        m.id for m in await self._ctx.gateway.list_payment_methods(
                            org.stripe_customer_id)}:
                    return "attached in Stripe: kept"
                return await run(partial(self._mark_detached, oid=oid, pid=pid, by="stripe",
                                         customer=org.stripe_customer_id))

    async def _forget_customer(self, txn: AsyncTransaction, *, oid: ObjectId,
                               customer: str) -> str:
        org = require_org(await org_in_txn(txn, oid), oid)
        if org.stripe_customer_id != customer:
            return "already forgotten"
        methods = await holding_methods_in_txn(txn, oid)
        await txn.write(plans.customer_deleted(org, methods, self._ctx.now(),
                                               box=self._ctx.outbox(documents.org_doc(org))))
        return f"forgotten; {len(methods)} methods marked detached"

    async def _delete_extra_customer(self, oid: ObjectId, customer_id: str) -> str:
        """Checked again just before: the org still has another customer recorded (so no
        attach will take this one over), and this one still has no payment methods."""
        org = require_org(await org_document(self._ctx.uow.direct, oid), oid)
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

    async def _mark_detached(self, txn: AsyncTransaction, *, oid: ObjectId, pid: ObjectId,
                             by: str, customer: str | None | bool = False) -> str:
        """`customer` (when not False): the org's customer Stripe was asked about; another one
        since leaves the method for the next run."""
        org_doc = await org_in_txn(txn, oid)
        if customer is not False:
            if require_org(org_doc, oid).stripe_customer_id != customer:
                return "the org's customer changed since Stripe was asked: left for the next run"
        writes = plan.mark_detached(oid, await method_in_txn(txn, oid, pid), org_doc,
                                    self._ctx.now(), by=by, box=self._ctx.outbox(org_doc))
        if writes is None:
            return "already settled"
        await txn.write(writes)
        faults.hit("reconcile.methods.after_write")
        return "marked detached"

    async def _clear_default(self, txn: AsyncTransaction, *, oid: ObjectId) -> str:
        org = require_org(await org_in_txn(txn, oid), oid)
        current = org.default_payment_method_id
        doc = await method_in_txn(txn, oid, ObjectId(current)) if current else None
        writes = plan.clear_default(org, doc)
        if not writes:
            return "already consistent"
        await txn.write(writes)
        return "default cleared"

    async def _finish_attach(self, txn: AsyncTransaction, *, oid: ObjectId, pid: ObjectId,
                             attached: dict[str, CardMethod]) -> str:
        """Activate a pending attach Stripe shows on the org's customer (the default if the
        attach asked for it), else mark it failed."""
        org = require_org(await org_in_txn(txn, oid), oid)
        now = self._ctx.now()
        doc = await method_in_txn(txn, oid, pid)
        if doc is None or doc["status"] != "pending":
            return "already settled"
        pending = documents.payment_method(doc)
        card = attached.get(plan.stripe_id_of(doc) or "")
        if card is None:
            await txn.write(plans.fail(oid, pending, "not attached in Stripe", now))
            return "marked failed"
        done = plans.activate(org, pending, card, make_default=doc.get("make_default") is True,
                              now=now, holder=await method_doc_holding(txn, oid, card.id),
                              box=self._ctx.outbox(documents.org_doc(org)))
        await txn.write(done.writes)
        return "activated" if done.result.failure is None and \
            done.result.method.id == pending.id else "marked failed"

    async def _adopt(self, txn: AsyncTransaction, *, oid: ObjectId, card: CardMethod | None
                     ) -> str:
        """Adopt a method Stripe shows on the org's customer and we do not know."""
        org = require_org(await org_in_txn(txn, oid), oid)
        now = self._ctx.now()
        if card is None:
            return "no longer attached"
        if await card_known_in_txn(txn, oid, card.id):
            return "already known"
        # A concurrent adoption (overlapping shards) inserts the same card: the unique index
        # on live records makes one of the two transactions retry and find it known.
        adopted = plan.adoption(oid, card, now)
        done = plans.activate(org, documents.payment_method(adopted.result), card,
                              make_default=False, now=now,
                              box=self._ctx.outbox(documents.org_doc(org)))
        await txn.write([*adopted.writes, *done.writes])
        return f"adopted as {adopted.result['_id']}"
