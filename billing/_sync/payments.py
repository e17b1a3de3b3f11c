# Generated from billing/_async by tools/synchro.py: do not edit.
"""Taking payment of an invoice with the org's default payment method.

Every Stripe call runs outside a transaction, between two transactions that say what is in
flight; the decisions are in `billing.plans.payments` (the payment rule is drawn there).
"""

from __future__ import annotations

import secrets
from typing import Any, NamedTuple

from bson import ObjectId

from billing import faults
from billing._sync.repositories.invoices import read_invoice
from billing._sync.repositories.orgs import org_doc_in
from billing._sync.repositories.payment_methods import method_doc_in
from billing._sync.repositories.payments import (
    payment_doc_in,
    payment_doc_of_attempt,
    payment_docs_of_invoice,
)
from billing._sync.service_context import Context
from billing._sync.unit_of_work import Transaction
from billing.adapters import documents, ids
from billing.domain.models import Invoice, Payment, PaymentStatus
from billing.domain.payments import Intent, IntentStatus
from billing.errors import (
    AmountBelowMinimum,
    BillingError,
    CardDeclined,
    InvoiceNotPayable,
    NotFound,
    PaymentError,
    PaymentInProgress,
    PaymentProviderUnavailable,
)
from billing.plans import collections, require_org
from billing.plans import payments as plans
from billing.plans.invoices import may_move_money
from billing.plans.payment_methods import require_method
from billing.plans.payments import Claim, Next

ROUNDS = 3  # settled earlier attempts a single pay() call will step over before giving up


class Payments:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def pay(self, org_id: Any, invoice_id: Any) -> Payment:
        """Charge an open invoice's total to the org's default payment method.

        One charge, ever, per invoice: a new PaymentIntent is created only when no earlier
        intent of the invoice can still move money, and an intent is confirmed only after a
        transaction has checked that the invoice is still payable and this call still holds
        its lease. An earlier attempt is first settled from Stripe's state: if it succeeded,
        that payment is returned; if it awaits 3-D Secure, PaymentRequiresAction; if it is
        processing or its outcome is unknown, PaymentInProgress (retryable). A total of 0 is
        paid without Stripe. Also raises CardDeclined (invoice stays open, failure recorded),
        AmountBelowMinimum, InvoiceNotPayable, NoDefaultPaymentMethod, and
        PaymentProviderUnavailable (retryable; nothing was charged, or the charge is recorded
        as in flight and settled by the next call).
        """
        oid = ids.object_id(org_id, name="org_id")
        iid = ids.object_id(invoice_id, name="invoice_id")
        self._ctx.require_gateway()
        for _ in range(ROUNDS):
            claim = self._claim(oid, iid)
            if claim.next is Next.DONE:
                return claim.payment
            payment = claim.payment
            if claim.next is Next.RESOLVE:
                payment, _ = self._resolve(oid, iid, claim, stop=False, resume=True)
                if payment.status in (PaymentStatus.FAILED, PaymentStatus.CANCELED) and \
                        not may_move_money(payment):
                    continue  # that attempt is over: the next round starts a new one
                if payment.status is PaymentStatus.SUCCEEDED:
                    return payment
                if payment.status is not PaymentStatus.PENDING:
                    raise plans.blocked(payment, str(iid))
            return self._charge(oid, iid, payment, claim.token)
        raise PaymentInProgress(
            f"invoice {iid}'s payment attempts kept ending while this call looked at them: "
            "retry the call")

    def settle(self, org_id: Any, invoice_id: Any, *, payment_id: Any = None
                     ) -> Payment | None:
        """Settle the invoice's latest attempt from Stripe's state, without a webhook (for lost
        webhooks and `processing` payments). An attempt abandoned by a crashed call is closed
        (a confirmation whose outcome is unknown is canceled in Stripe if it never arrived).
        `payment_id` names an earlier attempt instead of the latest (reconciliation does, for
        every attempt left unsettled). Returns the attempt as now recorded, or None when there
        is none. PaymentInProgress while another call holds the invoice;
        PaymentProviderUnavailable when Stripe cannot be asked (nothing changed)."""
        return (self.settle_reporting(org_id, invoice_id, payment_id=payment_id))[0]

    def settle_reporting(self, org_id: Any, invoice_id: Any, *, payment_id: Any = None
                               ) -> tuple[Payment | None, bool]:
        """`settle`, and whether this call brought the attempt to its recorded state (False:
        it was final already, settled by another call, run or webhook, or there is none), so
        that a run reports only what it did itself."""
        oid = ids.object_id(org_id, name="org_id")
        iid = ids.object_id(invoice_id, name="invoice_id")
        pid = None if payment_id is None else ids.object_id(payment_id, name="payment_id")
        return self._take_and_resolve(oid, iid, stop=False, payment_id=pid)

    def cancel(self, org_id: Any, invoice_id: Any) -> Payment | None:
        """Stop the invoice's latest attempt: an intent awaiting the customer (3-D Secure) or
        never confirmed is canceled in Stripe and recorded, so the invoice can be paid again or
        voided. If it had already succeeded, that is recorded (the invoice is paid). A
        `processing` payment cannot be canceled: PaymentInProgress. Returns the attempt as now
        recorded, or None when there is none."""
        oid = ids.object_id(org_id, name="org_id")
        iid = ids.object_id(invoice_id, name="invoice_id")
        payment, _ = self._take_and_resolve(oid, iid, stop=True)
        if payment is not None and may_move_money(payment):
            raise plans.blocked(payment, str(iid))
        return payment

    # ---- steps -------------------------------------------------------------------------------

    def _claim(self, oid: ObjectId, iid: ObjectId) -> Claim:
        token = secrets.token_hex(8)

        def work(txn: Transaction) -> Claim:
            org = require_org(org_doc_in(txn, oid), oid)
            invoice = read_invoice(txn, oid, iid)
            method = None
            if org.default_payment_method_id:
                pid = ObjectId(org.default_payment_method_id)
                method = require_method(method_doc_in(txn, oid, pid), oid, pid)
            latest = latest_payment(txn, oid, iid, invoice)
            plan = plans.claim(org, invoice, method, latest, now=self._ctx.now(),
                               lease_seconds=self._ctx.payment_lease_seconds, token=token,
                               box=self._ctx.outbox(documents.org_doc(org)))
            txn.write(plan.writes)
            return plan.result

        claim = self._ctx.uow.run(work)
        faults.hit("payments.after_claim")
        return claim

    def _take_and_resolve(self, oid: ObjectId, iid: ObjectId, *, stop: bool,
                                payment_id: ObjectId | None = None
                                ) -> tuple[Payment | None, bool]:
        """The attempt as recorded after resolving it, and whether this call moved it to that
        state (False: nothing to take, the attempt was final or there was none, or another
        call, run or webhook recorded the same state first)."""
        token = secrets.token_hex(8)

        def work(txn: Transaction) -> tuple[Claim | None, Payment | None]:
            invoice = read_invoice(txn, oid, iid)
            if payment_id is None:
                latest = latest_payment(txn, oid, iid, invoice)
            else:
                doc = payment_doc_in(txn, oid, payment_id, invoice_id=iid)
                latest = None if doc is None else documents.payment(doc)
            plan = plans.take(invoice, latest, now=self._ctx.now(),
                              lease_seconds=self._ctx.payment_lease_seconds, token=token)
            txn.write(plan.writes)
            return plan.result, latest

        claim, latest = self._ctx.uow.run(work)
        if claim is None:
            return latest, False
        return self._resolve(oid, iid, claim, stop=stop)

    def _resolve(self, oid: ObjectId, iid: ObjectId, claim: Claim, *, stop: bool,
                       resume: bool = False) -> tuple[Payment, bool]:
        """Bring an earlier attempt to what Stripe says, holding the lease by `claim.token`;
        the attempt as recorded, and whether this call moved it to that state.

        A confirmation whose outcome is unknown (Stripe still says `requires_confirmation`)
        is canceled in Stripe, so a confirmation still in flight cannot land later, and so is
        a failed one (`requires_payment_method`: it could be confirmed again); with `stop`, an
        intent awaiting the customer is canceled too. An intent never sent to be
        confirmed is handed back to `pay` with `resume` (it confirms that one instead of a new
        one); otherwise its call is gone (its lease expired) and it is canceled. A cancel
        that fails never lets anyone charge: the attempt stays as it was."""
        payment, gateway = claim.payment, self._ctx.gateway
        if payment.intent_id is None:  # nothing in Stripe we know of: close it here
            return (self._record(oid, iid, payment, None, abandon=True)).outcome
        try:
            intent = gateway.retrieve_intent(payment.intent_id)
        except NotFound:
            # Stripe (this account) has no such intent: it cannot move money here.
            return (self._record(oid, iid, payment, None, gone=True)).outcome
        except BillingError as exc:
            self._release(oid, iid, claim.token)
            raise _unknown(payment, iid) from exc
        unconfirmed = intent.status is IntentStatus.REQUIRES_CONFIRMATION
        if unconfirmed and payment.status is PaymentStatus.PENDING and resume:
            return payment, False  # never sent to be confirmed: this call confirms it (lease held)
        if intent.status is IntentStatus.REQUIRES_PAYMENT_METHOD:
            # Failed: recorded as that failure first (a `canceled` webhook landing after the
            # cancel must not read as a cancel instead), then canceled, then recorded again:
            # `intent_canceled`, or what it became meanwhile (succeeded: the invoice is paid).
            failed = self._record(oid, iid, payment, intent)
            intent = self._cancel(oid, iid, payment, claim.token)
            closed = self._record(oid, iid, payment, intent)
            return closed.payment, failed.moved or closed.moved
        if unconfirmed or (stop and intent.status is IntentStatus.REQUIRES_ACTION):
            intent = self._cancel(oid, iid, payment, claim.token)
        return (self._record(oid, iid, payment, intent)).outcome

    def _cancel(self, oid: ObjectId, iid: ObjectId, payment: Payment, token: str
                      ) -> Intent:
        """Cancel the attempt's intent; a cancel that fails leaves it as it is and raises,
        unless Stripe shows the intent ended anyway (e.g. it succeeded meanwhile)."""
        assert payment.intent_id is not None
        gateway = self._ctx.gateway
        try:
            return gateway.cancel_intent(payment.intent_id,
                                               idempotency_key=_cancel_key(payment, token))
        except BillingError as exc:
            now: Intent | None = None
            try:
                now = gateway.retrieve_intent(payment.intent_id)
            except BillingError:
                pass
            if now is None or now.status in (IntentStatus.REQUIRES_CONFIRMATION,
                                              IntentStatus.REQUIRES_ACTION,
                                              IntentStatus.REQUIRES_PAYMENT_METHOD):
                self._release(oid, iid, token)
                raise _unknown(payment, iid) from exc
            return now

    def _charge(self, oid: ObjectId, iid: ObjectId, payment: Payment, token: str
                      ) -> Payment:
        gateway = self._ctx.gateway
        if payment.intent_id is None:
            assert payment.customer_id is not None and payment.stripe_payment_method is not None
            try:
                intent = gateway.create_intent(
                    customer_id=payment.customer_id,
                    payment_method_id=payment.stripe_payment_method, amount=payment.amount,
                    currency=payment.currency, idempotency_key=f"{payment.idempotency_key}:create",
                    metadata={"org_id": str(oid), "invoice_id": str(iid),
                              "payment_id": payment.id})
            except BillingError as exc:
                if exc.retryable:  # it may exist in Stripe: the next call abandons the attempt
                    self._release(oid, iid, token)
                    raise
                # Refused: this attempt is over; the next pay() uses the org's current default.
                self._record(oid, iid, payment, None, failure=(
                    getattr(exc, "code", None) or type(exc).__name__, exc.message))
                if getattr(exc, "code", None) == "amount_too_small":
                    raise AmountBelowMinimum(f"Stripe refused to charge invoice {iid}: "
                                             f"{exc.message}") from exc
                raise
            faults.hit("payments.after_create_intent")
            payment = self._record_intent(oid, iid, payment, intent, token)
        payment = self._start_confirm(oid, iid, payment, token)
        assert payment.intent_id is not None
        try:
            intent = gateway.confirm_intent(
                payment.intent_id, idempotency_key=f"{payment.idempotency_key}:confirm")
        except CardDeclined as exc:
            # The issuer's reason (lost_card...) when Stripe gives one: it decides retries.
            self._record(oid, iid, payment, None,
                               failure=(exc.decline_code or exc.code, exc.message))
            self._close_failed(oid, iid, payment, token)
            raise
        except BillingError as exc:
            # Stripe may or may not have confirmed it: only its state can say.
            try:
                intent = gateway.retrieve_intent(payment.intent_id)
            except BillingError:
                self._release(oid, iid, token)
                raise _unknown(payment, iid) from exc
            if intent.status is IntentStatus.REQUIRES_CONFIRMATION:
                if exc.retryable:
                    self._release(oid, iid, token)  # stays `confirming`: resolved later
                    raise
                self._record(oid, iid, payment, None, failure=(
                    getattr(exc, "code", None) or type(exc).__name__, exc.message))
                self._close_failed(oid, iid, payment, token)
                raise
        faults.hit("payments.after_confirm")
        settled = (self._record(oid, iid, payment, intent)).payment
        if settled.status not in plans.FINAL:
            raise plans.blocked(settled, str(iid))
        if settled.status is not PaymentStatus.SUCCEEDED:
            raise PaymentError(
                f"payment {settled.id} of invoice {iid} ended {settled.status.value} "
                f"({settled.failure_code or 'no code'}): nothing was charged; the invoice stays "
                "open", code=settled.failure_code, payment_id=settled.id)
        return settled

    def _close_failed(self, oid: ObjectId, iid: ObjectId, payment: Payment, token: str
                            ) -> None:
        """Cancel the intent of an attempt just recorded failed (declined, or refused before
        being confirmed), which could otherwise be confirmed again, and record that. A cancel
        Stripe does not answer leaves the attempt failed with its intent live: the next call
        that looks at the invoice resolves it (`_resolve`) before anything new."""
        assert payment.intent_id is not None
        try:
            intent = self._ctx.gateway.cancel_intent(
                payment.intent_id, idempotency_key=_cancel_key(payment, token))
        except BillingError:
            return
        self._record(oid, iid, payment, intent)

    def _record_intent(self, oid: ObjectId, iid: ObjectId, payment: Payment,
                             intent: Intent, token: str) -> Payment:
        def work(txn: Transaction) -> Payment | None:
            invoice = read_invoice(txn, oid, iid)
            current = self._payment(txn, oid, payment.id)
            plan = plans.record_intent(invoice, current, intent.id, token)
            txn.write(plan.writes)
            return plan.result

        recorded = self._ctx.uow.run(work)
        if recorded is None or recorded.intent_id != intent.id:
            # Not ours to confirm any more: make sure this intent never moves money.
            try:
                self._ctx.gateway.cancel_intent(
                    intent.id, idempotency_key=f"{payment.idempotency_key}:cancel-extra")
            except BillingError:
                pass  # unconfirmed, and nobody will confirm it: it cannot move money
            raise PaymentInProgress(
                f"payment {payment.id} of invoice {iid} was taken over or abandoned while its "
                "intent was being created; that intent was canceled and nothing was charged by "
                "this call: check the invoice, then pay again if it is still open",
                payment_id=payment.id)
        return recorded

    def _start_confirm(self, oid: ObjectId, iid: ObjectId, payment: Payment, token: str
                             ) -> Payment:
        def work(txn: Transaction) -> Payment:
            invoice = read_invoice(txn, oid, iid)
            current = self._payment(txn, oid, payment.id)
            plan = plans.start_confirm(invoice, current, token, now=self._ctx.now())
            txn.write(plan.writes)
            return plan.result

        return self._ctx.uow.run(work)

    def _release(self, oid: ObjectId, iid: ObjectId, token: str) -> None:
        def work(txn: Transaction) -> None:
            plan = plans.release(read_invoice(txn, oid, iid), token)
            txn.write(plan.writes)

        try:
            self._ctx.uow.run(work)
        except BillingError:
            pass  # the lease expires by itself; the error being raised matters more

    def _record(
        self, oid: ObjectId, iid: ObjectId, payment: Payment, intent: Intent | None, *,
        failure: tuple[str | None, str] | None = None, abandon: bool = False,
        gone: bool = False,
    ) -> Recorded:
        def work(txn: Transaction) -> Recorded:
            invoice = read_invoice(txn, oid, iid)
            current = self._payment(txn, oid, payment.id)
            failures, days, org = dunning(txn, oid, iid, payment.id,
                                                self._ctx.collection_schedule)
            plan = plans.settle(invoice, current, intent, now=self._ctx.now(), failure=failure,
                                abandon=abandon, gone=gone, failures=failures, days=days,
                                box=self._ctx.outbox(org))
            txn.write(plan.writes)
            faults.hit("payments.settle.after_write")
            invoice, settled = plan.result
            return Recorded(invoice, settled, settled.status is not current.status)

        return self._ctx.uow.run(work)

    @staticmethod
    def _payment(txn: Transaction, oid: ObjectId, payment_id: str) -> Payment:
        doc = payment_doc_in(txn, oid, ObjectId(payment_id))
        if doc is None:
            raise InvoiceNotPayable(f"payment {payment_id} is gone: check the invoice")
        return documents.payment(doc)


class Recorded(NamedTuple):
    """What settling an attempt recorded, and whether it moved the attempt's status (False:
    it was already so, recorded by another call, run or webhook)."""
    invoice: Invoice
    payment: Payment
    moved: bool

    @property
    def outcome(self) -> tuple[Payment, bool]:
        return self.payment, self.moved


def _cancel_key(payment: Payment, token: str) -> str:
    """A cancel's idempotency key, per call: Stripe keeps a refused cancel's answer under its
    key for a day, and a later call's cancel (the intent failed again since) must be asked
    afresh. Canceling is safe to repeat: a canceled intent stays canceled."""
    return f"{payment.idempotency_key}:cancel:{token}"


def _unknown(payment: Payment, iid: ObjectId) -> PaymentProviderUnavailable:
    return PaymentProviderUnavailable(
        f"Stripe could not be asked about payment {payment.id} of invoice {iid}: nothing new "
        "was charged and the attempt stays as recorded, blocking any new charge until its "
        "state is known; retry later", payment_id=payment.id)


def dunning(txn: Transaction, oid: ObjectId, iid: ObjectId, payment_id: str,
                  default: tuple[int, ...]
                  ) -> tuple[int, tuple[int, ...], dict[str, Any] | None]:
    """For settling `payment_id`: the invoice's other failed attempts that used up a scheduled
    attempt, the org's retry schedule (its own, else the deployment's), and the org."""
    org = org_doc_in(txn, oid)
    days = tuple(org.get("collection_schedule") or default) if org else default
    others = payment_docs_of_invoice(txn, oid, iid)
    failures = sum(1 for doc in others if str(doc["_id"]) != payment_id
                   and collections.counted(documents.payment(doc)))
    return failures, days, org


def latest_payment(txn: Transaction, oid: ObjectId, iid: ObjectId,
                         invoice: Invoice) -> Payment | None:
    """The invoice's latest payment attempt, if any."""
    if not invoice.payment_attempts:
        return None
    doc = payment_doc_of_attempt(txn, oid, iid, invoice.payment_attempts)
    return None if doc is None else documents.payment(doc)
