"""Stripe webhooks: verified, applied once, never moving an invoice backwards."""

from __future__ import annotations

from typing import Any

from bson import ObjectId
from bson.errors import InvalidId

from billing import faults
from billing._async.payments import dunning
from billing._async.repositories.invoices import read_invoice
from billing._async.service_context import AsyncContext
from billing._async.unit_of_work import AsyncTransaction
from billing.adapters import documents, schema
from billing.adapters.stripe_webhooks import StripeEvent, verify
from billing.errors import BillingError, ConfigurationError, WebhookRejected
from billing.plans import payment_methods as method_plans
from billing.plans import require_org
from billing.plans.webhooks import (
    HANDLED,
    WebhookOutcome,
    WebhookResult,
    intent_event,
    processed,
)

Applied = tuple[WebhookOutcome, str, Any]  # (outcome, detail, org id)


class AsyncWebhooks:
    def __init__(self, ctx: AsyncContext) -> None:
        self._ctx = ctx

    async def handle(self, payload: bytes, signature_header: str | None) -> WebhookResult:
        """Verify and apply one Stripe event; map `result.http_status` to the HTTP answer.

        The signature is checked on the raw bytes (with a timestamp tolerance) before anything
        is read or written. The effect and the record of the event id commit in one transaction,
        so a repeated or concurrent delivery has one effect. Failures are audited in
        `webhook_log`, outside that transaction, so they survive its rollback.
        """
        if not self._ctx.webhook_secret:
            raise ConfigurationError("no webhook secret: pass webhook_secret=... to Billing(...)")
        try:
            event = verify(payload, signature_header, secret=self._ctx.webhook_secret)
        except WebhookRejected as exc:
            return WebhookResult(WebhookOutcome.REJECTED, detail=exc.message)
        try:
            outcome, detail = await self._ctx.uow.run(lambda txn: self._apply(txn, event))
        except BillingError as exc:
            await self._audit(event, f"{type(exc).__name__}: {exc.message}", exc.retryable)
            retry = exc.retryable or isinstance(exc, ConfigurationError)
            return WebhookResult(WebhookOutcome.RETRY if retry else WebhookOutcome.IGNORED,
                                 event.id, event.type, f"{type(exc).__name__}: {exc.message}")
        if outcome is WebhookOutcome.MISMATCH:
            await self._audit(event, detail, False)
        return WebhookResult(outcome, event.id, event.type, detail)

    async def _apply(self, txn: AsyncTransaction, event: StripeEvent
                     ) -> tuple[WebhookOutcome, str]:
        if await txn.find_one(schema.WEBHOOK_EVENTS, {"_id": event.id}) is not None:
            return WebhookOutcome.DUPLICATE, "already processed"
        outcome, detail, org_id = (WebhookOutcome.IGNORED, "event type not handled", None)
        if event.type in HANDLED:
            outcome, detail, org_id = await self._effect(txn, event)
        now = self._ctx.now()
        await txn.write([processed(event.id, event.type, outcome, detail, org_id, now)])
        faults.hit("webhooks.after_write")
        return outcome, detail

    async def _effect(self, txn: AsyncTransaction, event: StripeEvent) -> Applied:
        obj, now = event.data_object, self._ctx.now()
        if event.type.startswith("payment_intent."):
            # The org in our metadata only scopes the lookup; what the event may change is
            # decided from the payment we recorded for this intent id.
            meta = obj.get("metadata")
            intent_id = obj.get("id")
            org_text = meta.get("org_id") if isinstance(meta, dict) else None
            try:
                oid = ObjectId(org_text) if isinstance(org_text, str) else None
            except InvalidId:
                oid = None
            if oid is None:
                return WebhookOutcome.IGNORED, "not a billing payment (no org in metadata)", None
            if not isinstance(intent_id, str):
                return WebhookOutcome.IGNORED, "event has no intent id", oid
            doc = await txn.find_one(schema.PAYMENTS, {"org_id": oid, "intent_id": intent_id})
            payment = documents.payment(doc) if doc is not None else None
            invoice = failures = payer = None
            days: tuple[int, ...] = ()
            if payment is not None:
                invoice = await read_invoice(txn, oid, ObjectId(payment.invoice_id))
                failures, days, payer = await dunning(txn, oid, ObjectId(payment.invoice_id),
                                                      payment.id, self._ctx.collection_schedule)
            outcome, detail, writes = intent_event(event.type, obj, payment, invoice, now=now,
                                                   failures=failures or 0, days=days,
                                                   box=self._ctx.outbox(payer))
            await txn.write(writes)
            return outcome, detail, oid
        customer = obj.get("id") if event.type == "customer.deleted" else (
            event.previous_attributes.get("customer") or obj.get("customer"))
        org_doc = await txn.find_one(schema.ORGS, {"stripe_customer_id": customer}) \
            if isinstance(customer, str) else None
        if org_doc is None:
            return WebhookOutcome.IGNORED, "no org has this customer", None
        org = require_org(org_doc, org_doc["_id"])
        live = {"org_id": org_doc["_id"], "status": {"$in": ["active", "detaching"]}}
        if event.type == "customer.deleted":
            methods = [documents.payment_method(d)
                       for d in await txn.find(schema.PAYMENT_METHODS, live)]
            await txn.write(method_plans.customer_deleted(org, methods, now,
                                                          box=self._ctx.outbox(org_doc)))
            detail = f"customer deleted: {len(methods)} methods detached"
            return WebhookOutcome.PROCESSED, detail, org_doc["_id"]
        found = await txn.find(schema.PAYMENT_METHODS, {**live, "stripe_id": obj.get("id")})
        if not found:
            return WebhookOutcome.IGNORED, "payment method not active here", org_doc["_id"]
        plan = method_plans.detached_in_stripe(org, documents.payment_method(found[0]), now,
                                               box=self._ctx.outbox(org_doc))
        await txn.write(plan.writes)
        return WebhookOutcome.PROCESSED, f"payment method {plan.result.id} detached", org_doc["_id"]

    async def _audit(self, event: StripeEvent, error: str, retryable: bool) -> None:
        try:
            await self._ctx.uow.db[schema.WEBHOOK_LOG].insert_one({
                "event_id": event.id, "type": event.type, "at": self._ctx.now(),
                "error": error, "retryable": retryable})
        except Exception:  # noqa: BLE001 - the audit must never hide the answer to Stripe
            pass

