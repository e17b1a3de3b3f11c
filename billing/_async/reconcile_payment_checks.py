"""Reconciliation of payments: attempts left unsettled, webhooks that disagreed with our records.

An attempt that is still `pending`, `confirming`, `requires_action` or `processing` after
`stale_after` either lost its webhook or was left by a process that died: `--apply` settles it
from Stripe's state (`invoices.settle_payment`), which also abandons an attempt whose intent was
never recorded and cancels a confirmation that never reached Stripe. A webhook whose amount,
currency or customer disagreed with the attempt it names changed nothing; it is reported for a
person for `MISMATCH_DAYS` days.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from bson import ObjectId

from billing._async.payments import AsyncPayments
from billing._async.repositories.payments import unsettled_payments_of_org
from billing._async.repositories.webhook_events import mismatched_webhooks_of_org
from billing._async.service_context import AsyncContext
from billing.plans import reconciliation as plan
from billing.plans.invoices import may_move_money
from billing.plans.payments import blocked
from billing.reconcile_findings import Finding

MISMATCH_DAYS = 7


class AsyncPaymentChecks:
    def __init__(self, ctx: AsyncContext, payments: AsyncPayments) -> None:
        self._ctx = ctx
        self._payments = payments

    async def scan(self, oid: ObjectId, stale_before: datetime) -> list[Finding]:
        direct = self._ctx.uow.direct
        out = plan.unsettled_payments(oid, await unsettled_payments_of_org(direct, oid),
                                      stale_before, can_ask=self._ctx.gateway_or_none is not None)
        since = self._ctx.now() - timedelta(days=MISMATCH_DAYS)
        return out + plan.mismatched_webhooks(oid, await mismatched_webhooks_of_org(direct, oid),
                                              since)

    async def repair(self, repair: plan.SettlePayment, org_id: str) -> str:
        payment = await self._payments.settle(org_id, repair.invoice_id,
                                              payment_id=repair.payment_id)
        if payment is None:
            return "no attempt left to settle"
        if may_move_money(payment):  # Stripe still holds it open: waiting, not repaired
            raise blocked(payment, str(repair.invoice_id))
        canceled = " (its intent canceled in Stripe)" if payment.intent_canceled else ""
        return f"payment {payment.id} is {payment.status.value}{canceled}"
