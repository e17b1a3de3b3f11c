"""Payment methods: attached in Stripe, owned by an org in MongoDB, kept in step."""

from __future__ import annotations

from typing import Any

from bson import ObjectId

from billing import faults
from billing._async.context import AsyncContext
from billing._async.customers import ensure_customer
from billing._async.unit_of_work import AsyncTransaction
from billing.adapters import documents, ids, schema
from billing.adapters.mongo_errors import translated
from billing.domain.inputs import text
from billing.domain.models import PaymentMethod, PaymentMethodStatus
from billing.domain.payments import CardMethod
from billing.errors import BillingError, PaymentMethodNotFound
from billing.plans import payment_methods as plans
from billing.plans import require_org


class AsyncPaymentMethods:
    def __init__(self, ctx: AsyncContext) -> None:
        self._ctx = ctx

    async def attach(
        self, org_id: Any, stripe_payment_method: Any, *, request_id: Any,
        make_default: bool = False,
    ) -> PaymentMethod:
        """Attach a Stripe payment method to the org (its first becomes the default).

        Idempotent per `request_id`: a repeat returns the same method and attaches nothing
        again. Steps: a pending record; the Stripe customer (created once); the attach in Stripe,
        outside any transaction; then one transaction activating the record and setting the
        default. If that transaction fails the attach is undone in Stripe; if the undo fails
        too, the pending record (with the Stripe id) is left for reconciliation.
        """
        oid = ids.object_id(org_id, name="org_id")
        source = text(stripe_payment_method, name="stripe_payment_method", limit=255)
        request = text(request_id, name="request_id", limit=255)
        self._ctx.require_gateway()  # ConfigurationError now, before anything is written
        now = self._ctx.now

        async def begin(txn: AsyncTransaction) -> PaymentMethod:
            org = require_org(await txn.find_one(schema.ORGS, {"_id": oid}), oid)
            existing = await txn.find_one(schema.PAYMENT_METHODS,
                                          {"org_id": oid, "request_id": request})
            plan = plans.begin_attach(org, existing, source=source, request_id=request, now=now())
            await txn.write(plan.writes)
            return plan.result

        pending = await self._ctx.uow.run(begin)
        if pending.status is not PaymentMethodStatus.PENDING:
            return pending
        customer = await ensure_customer(self._ctx, oid)
        key = f"pm-attach:{oid}:{request}"
        try:
            card = await self._ctx.gateway.attach(
                payment_method=source, customer_id=customer, idempotency_key=key)
        except BillingError as exc:
            if not exc.retryable:  # refused: the request is over
                reason = f"{type(exc).__name__}: {exc.message}"
                await self._ctx.uow.run(lambda txn: txn.write(
                    plans.fail(oid, pending, reason, now())))
            raise
        pending_id = ObjectId(pending.id)

        async def activate(txn: AsyncTransaction) -> PaymentMethod:
            org = require_org(await txn.find_one(schema.ORGS, {"_id": oid}), oid)
            current = plans.require_method(await txn.find_one(
                schema.PAYMENT_METHODS, {"_id": pending_id, "org_id": oid}), oid, pending_id)
            plan = plans.activate(org, current, card, make_default=bool(make_default), now=now())
            await txn.write(plan.writes)
            faults.hit("payment_methods.attach.after_write")
            return plan.result

        try:
            faults.hit("payment_methods.attach.after_stripe")
            return await self._ctx.uow.run(activate)
        except BaseException:  # the process lives on: undo the Stripe attach
            await self._compensate(oid, pending, card, key)
            raise

    async def _compensate(self, oid: Any, pending: PaymentMethod, card: CardMethod,
                          key: str) -> None:
        """Undo the Stripe attach of a failed activation; else leave it for reconciliation."""
        try:
            await self._ctx.gateway.detach(card.id, idempotency_key=f"{key}:undo")
            await self._ctx.uow.run(lambda txn: txn.write(
                plans.fail(oid, pending, "activation failed; detached in Stripe",
                           self._ctx.now())))
        except BillingError:
            try:
                await self._ctx.uow.run(lambda txn: txn.write(
                    plans.record_stripe_id(oid, pending, card.id)))
            except BillingError:
                pass  # reconciliation finds the Stripe method by listing the customer

    async def detach(self, org_id: Any, payment_method_id: Any) -> PaymentMethod:
        """Detach from the org and in Stripe. The org's default is cleared first (same
        transaction as marking the method `detaching`), then Stripe, then `detached`.
        Idempotent; a crash after the first step is finished by reconciliation or a repeat."""
        oid = ids.object_id(org_id, name="org_id")
        pid = ids.object_id(payment_method_id, name="payment_method_id")
        self._ctx.require_gateway()  # ConfigurationError now, before anything is written
        now = self._ctx.now

        async def begin(txn: AsyncTransaction) -> PaymentMethod:
            org = require_org(await txn.find_one(schema.ORGS, {"_id": oid}), oid)
            method = plans.require_method(await txn.find_one(
                schema.PAYMENT_METHODS, {"_id": pid, "org_id": oid}), oid, pid)
            plan = plans.begin_detach(org, method, now())
            await txn.write(plan.writes)
            return plan.result

        method = await self._ctx.uow.run(begin)
        if method.status is PaymentMethodStatus.DETACHED:
            return method
        faults.hit("payment_methods.detach.after_mark")
        if method.stripe_id:
            try:
                await self._ctx.gateway.detach(method.stripe_id,
                                               idempotency_key=f"pm-detach:{oid}:{pid}")
            except PaymentMethodNotFound:
                pass  # already gone in Stripe: the outcome we want
        faults.hit("payment_methods.detach.after_stripe")
        return await self._ctx.uow.run(lambda txn: self._finish_detach(txn, oid, pid))

    async def _finish_detach(self, txn: AsyncTransaction, oid: Any, pid: Any) -> PaymentMethod:
        method = plans.require_method(await txn.find_one(
            schema.PAYMENT_METHODS, {"_id": pid, "org_id": oid}), oid, pid)
        plan = plans.finish_detach(oid, method, self._ctx.now())
        await txn.write(plan.writes)
        return plan.result

    async def set_default(self, org_id: Any, payment_method_id: Any) -> PaymentMethod:
        """Make an active method the org's default."""
        oid = ids.object_id(org_id, name="org_id")
        pid = ids.object_id(payment_method_id, name="payment_method_id")

        async def work(txn: AsyncTransaction) -> PaymentMethod:
            org = require_org(await txn.find_one(schema.ORGS, {"_id": oid}), oid)
            method = plans.require_method(await txn.find_one(
                schema.PAYMENT_METHODS, {"_id": pid, "org_id": oid}), oid, pid)
            await txn.write(plans.set_default(org, method).writes)
            return method

        return await self._ctx.uow.run(work)

    async def list(self, org_id: Any) -> list[PaymentMethod]:
        """The org's active payment methods, oldest first."""
        oid = ids.object_id(org_id, name="org_id")
        await self._ctx.uow.check_server()
        with translated():
            docs = await self._ctx.uow.db[schema.PAYMENT_METHODS].find(
                {"org_id": oid, "status": PaymentMethodStatus.ACTIVE.value}).sort(
                "_id", 1).to_list()
        return [documents.payment_method(doc) for doc in docs]
