"""Taking payment of an invoice with the org's default payment method."""

from __future__ import annotations

from typing import Any

from bson import ObjectId

from billing import faults
from billing._async.context import AsyncContext
from billing._async.reads import read_invoice
from billing._async.unit_of_work import AsyncTransaction
from billing.adapters import documents, ids, schema
from billing.domain.models import Invoice, InvoiceStatus, Payment, PaymentStatus
from billing.domain.payments import Intent, IntentStatus
from billing.errors import CardDeclined, PaymentError, PaymentRequiresAction
from billing.plans import payments as plans
from billing.plans import require_org
from billing.plans.invoices import UNSETTLED
from billing.plans.payment_methods import require_method


class AsyncPayments:
    def __init__(self, ctx: AsyncContext) -> None:
        self._ctx = ctx

    async def pay(self, org_id: Any, invoice_id: Any) -> Payment:
        """Charge an open invoice's total to the org's default payment method.

        One charge, ever, per invoice: concurrent calls get PaymentInProgress (retryable) while
        one attempt holds the invoice's lease; money moves only by confirming the one intent
        recorded on the attempt (key `pay:{invoice}:{attempt}`), so a retry after a network
        failure or crash confirms the same intent. The payment record and the invoice status
        change are written in one transaction. Raises CardDeclined (invoice stays open, failure
        recorded), PaymentRequiresAction (3-D Secure: not paid), InvoiceNotPayable,
        NoDefaultPaymentMethod, PaymentProviderUnavailable (retryable).
        """
        oid = ids.object_id(org_id, name="org_id")
        iid = ids.object_id(invoice_id, name="invoice_id")
        gateway = self._ctx.gateway

        async def claim(txn: AsyncTransaction) -> tuple[Payment, Payment | None]:
            org = require_org(await txn.find_one(schema.ORGS, {"_id": oid}), oid)
            invoice = await read_invoice(txn, oid, iid)
            method = None
            if org.default_payment_method_id:
                pid = ObjectId(org.default_payment_method_id)
                method = require_method(await txn.find_one(
                    schema.PAYMENT_METHODS, {"_id": pid, "org_id": oid}), oid, pid)
            leased = previous = None
            if invoice.payment_lease is not None:
                leased = await txn.find_one(schema.PAYMENTS, {
                    "_id": ObjectId(invoice.payment_lease.payment_id), "org_id": oid})
            if invoice.payment_attempts:
                previous = await txn.find_one(schema.PAYMENTS, {
                    "org_id": oid, "invoice_id": iid, "attempt": invoice.payment_attempts})
            plan = plans.claim(org, invoice, method, leased, previous, now=self._ctx.now(),
                               lease_seconds=self._ctx.payment_lease_seconds)
            await txn.write(plan.writes)
            return plan.result

        payment, earlier = await self._ctx.uow.run(claim)
        faults.hit("payments.after_claim")
        if earlier is not None:
            # An earlier attempt (e.g. awaiting 3-D Secure) could still succeed later: cancel it
            # before charging again, or, if it already succeeded, let it pay the invoice.
            assert earlier.intent_id is not None
            try:
                old = await gateway.cancel_intent(
                    earlier.intent_id, idempotency_key=f"{earlier.idempotency_key}:cancel")
            except PaymentError:
                old = await gateway.retrieve_intent(earlier.intent_id)
            if old.status is IntentStatus.SUCCEEDED:
                await self._settle(oid, iid, payment, None,
                                   failure=("superseded", "an earlier attempt succeeded"))
                return (await self._settle(oid, iid, earlier, old))[1]
            await self._settle(oid, iid, earlier, old)
        if payment.intent_id is None:
            payment = await self._create_intent(oid, iid, payment)
        assert payment.intent_id is not None
        try:
            intent = await gateway.confirm_intent(
                payment.intent_id, idempotency_key=f"{payment.idempotency_key}:confirm")
        except CardDeclined as exc:
            await self._settle(oid, iid, payment, None, failure=(exc.code, exc.message))
            raise
        except PaymentError as exc:
            if not exc.retryable:
                await self._settle(oid, iid, payment, None, failure=(exc.code, exc.message))
            raise  # retryable: the lease expires and a repeat confirms the same intent
        faults.hit("payments.after_confirm")
        _, settled = await self._settle(oid, iid, payment, intent)
        if settled.status is PaymentStatus.REQUIRES_ACTION:
            raise PaymentRequiresAction(
                f"payment {settled.id} needs the customer to authenticate (3-D Secure); the "
                "invoice stays open until Stripe reports success", code="requires_action")
        return settled

    async def cancel_unsettled(self, oid: ObjectId, iid: ObjectId) -> None:
        """Before a void: the latest attempt's intent, if it could still take money (awaiting
        3-D Secure, or confirmed by a process that died) and no live attempt holds the lease, is
        canceled in Stripe and the outcome recorded. If it had succeeded, that pays the invoice
        (and the void is refused); a live attempt is left alone (the void is refused)."""

        async def read(txn: AsyncTransaction) -> tuple[Invoice, Payment | None]:
            invoice = await read_invoice(txn, oid, iid)
            return invoice, await latest_payment(txn, oid, iid, invoice)

        invoice, latest = await self._ctx.uow.run(read)
        lease = invoice.payment_lease
        if (latest is None or not latest.intent_id or latest.status not in UNSETTLED
                or invoice.status in (InvoiceStatus.PAID, InvoiceStatus.VOID)
                or (lease is not None and lease.expires_at > self._ctx.now())):
            return
        gateway = self._ctx.gateway
        try:
            intent = await gateway.cancel_intent(
                latest.intent_id, idempotency_key=f"{latest.idempotency_key}:cancel")
        except PaymentError:
            intent = await gateway.retrieve_intent(latest.intent_id)
        await self._settle(oid, iid, latest, intent)

    async def _create_intent(self, oid: ObjectId, iid: ObjectId, payment: Payment) -> Payment:
        assert payment.customer_id is not None and payment.stripe_payment_method is not None
        intent = await self._ctx.gateway.create_intent(
            customer_id=payment.customer_id, payment_method_id=payment.stripe_payment_method,
            amount=payment.amount, currency=payment.currency,
            metadata={"org_id": str(oid), "invoice_id": str(iid), "payment_id": payment.id},
            idempotency_key=f"{payment.idempotency_key}:create",
        )
        faults.hit("payments.after_create_intent")

        async def record(txn: AsyncTransaction) -> Payment:
            doc = await txn.find_one(schema.PAYMENTS, {"_id": ObjectId(payment.id), "org_id": oid})
            assert doc is not None
            plan = plans.record_intent(documents.payment(doc), intent.id)
            await txn.write(plan.writes)
            return plan.result

        recorded = await self._ctx.uow.run(record)
        if recorded.intent_id != intent.id:  # another process recorded first: drop ours
            await self._ctx.gateway.cancel_intent(
                intent.id, idempotency_key=f"{payment.idempotency_key}:cancel-extra")
        return recorded

    async def _settle(
        self, oid: ObjectId, iid: ObjectId, payment: Payment, intent: Intent | None, *,
        failure: tuple[str | None, str] | None = None,
    ) -> tuple[Invoice, Payment]:
        async def work(txn: AsyncTransaction) -> tuple[Invoice, Payment]:
            invoice = await read_invoice(txn, oid, iid)
            doc = await txn.find_one(schema.PAYMENTS, {"_id": ObjectId(payment.id), "org_id": oid})
            assert doc is not None
            plan = plans.settle(invoice, documents.payment(doc), intent, now=self._ctx.now(),
                                failure=failure)
            await txn.write(plan.writes)
            faults.hit("payments.settle.after_write")
            return plan.result

        return await self._ctx.uow.run(work)


async def latest_payment(txn: AsyncTransaction, oid: ObjectId, iid: ObjectId,
                         invoice: Invoice) -> Payment | None:
    """The invoice's latest payment attempt, if any."""
    if not invoice.payment_attempts:
        return None
    doc = await txn.find_one(schema.PAYMENTS, {"org_id": oid, "invoice_id": iid,
                                                "attempt": invoice.payment_attempts})
    return None if doc is None else documents.payment(doc)
