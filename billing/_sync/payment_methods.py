# Generated from billing/_async by tools/synchro.py: do not edit.
"""Payment methods: attached in Stripe, owned by an org in MongoDB, kept in step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bson import ObjectId

from billing import faults
from billing._sync.customers import ensure_customer
from billing._sync.repositories.orgs import org_doc_in
from billing._sync.repositories.payment_methods import (
    active_method_docs_now,
    detached_method_doc,
    method_doc_holding,
    method_doc_in,
    method_doc_of_request,
)
from billing._sync.service_context import Context
from billing._sync.unit_of_work import Transaction
from billing.adapters import documents, ids
from billing.adapters.writes import Write
from billing.domain.inputs import flag, text
from billing.domain.models import PaymentMethod, PaymentMethodStatus
from billing.domain.payments import CardMethod
from billing.errors import BillingError, PaymentError, PaymentMethodNotFound
from billing.plans import payment_methods as plans
from billing.plans import require_org


class PaymentMethods:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def attach(
        self, org_id: Any, stripe_payment_method: Any, *, request_id: Any,
        make_default: bool = False,
    ) -> PaymentMethod:
        """Attach a Stripe payment method to the org (its first becomes the default).

        Idempotent per `request_id`: a repeat returns the same method and attaches nothing
        again. Steps: a pending record; the Stripe customer (created once, see
        `ensure_customer`); the attach in Stripe, outside any transaction; then one transaction
        activating the record and setting the default, only if the card is on the org's current
        customer and no other record holds it (a card already attached here returns that
        method, made the default when `make_default`). If that transaction fails, what
        committed is read back first: an active record is kept (the attach succeeded);
        otherwise the attach is undone in Stripe unless another record holds the card. If the
        undo fails too, the pending record (with the Stripe id) is left for reconciliation.
        PaymentError when the attach was refused or the org's customer was deleted meanwhile
        (the record is `failed`: use a new request_id); PaymentMethodNotFound advising
        reconciliation when the org's recorded customer no longer exists in Stripe.
        """
        make_default = flag(make_default, name="make_default")
        oid = ids.object_id(org_id, name="org_id")
        source = text(stripe_payment_method, name="stripe_payment_method", limit=255)
        request = text(request_id, name="request_id", limit=255)
        self._ctx.require_gateway()  # ConfigurationError now, before anything is written
        now = self._ctx.now

        def begin(txn: Transaction) -> PaymentMethod:
            org = require_org(org_doc_in(txn, oid), oid)
            existing = method_doc_of_request(txn, oid, request)
            original = None
            if existing is not None and existing.get("duplicate_of"):
                original = method_doc_in(txn, oid, ObjectId(existing["duplicate_of"]))
            plan = plans.begin_attach(org, existing, source=source, request_id=request,
                                      now=now(), original=original,
                                      make_default=bool(make_default))
            txn.write(plan.writes)
            return plan.result

        pending = self._ctx.uow.run(begin)
        if pending.status is not PaymentMethodStatus.PENDING:
            return pending
        customer = ensure_customer(self._ctx, oid)
        key = f"pm-attach:{oid}:{request}"
        try:
            if pending.stripe_id is not None:
                # An earlier call of this request was answered by Stripe, then interrupted:
                # ask where that card is rather than attach the source again (a one-time token
                # would become a second card; a card detached since must not come back).
                card = self._attached_earlier(oid, pending, customer)
            else:
                card = self._ctx.gateway.attach(
                    payment_method=source, customer_id=customer, idempotency_key=key)
        except BillingError as exc:
            if exc.retryable:
                raise
            # Refused: the request is over. Stripe's "no such customer" cannot be cured by
            # attaching again while the org still records that customer.
            gone = isinstance(exc, PaymentMethodNotFound) and self._customer_gone(customer)
            reason = f"{type(exc).__name__}: {exc.message}"
            self._while_pending(oid, pending, lambda m: plans.fail(oid, m, reason, now()))
            if gone:
                raise PaymentMethodNotFound(
                    f"the org's Stripe customer {customer} no longer exists in Stripe (deleted, "
                    "its customer.deleted event not processed): run reconciliation, which "
                    f"forgets it (`billing reconcile --apply --org {oid} --check "
                    "payment_method`), then attach with a new request_id") from exc
            raise
        pending_id = ObjectId(pending.id)

        def activate(txn: Transaction) -> plans.Activation:
            org = require_org(org_doc_in(txn, oid), oid)
            current = plans.require_method(method_doc_in(txn, oid, pending_id), oid,
                                           pending_id)
            plan = plans.activate(org, current, card, make_default=bool(make_default),
                                  now=now(), holder=method_doc_holding(txn, oid, card.id),
                                  detached=detached_method_doc(txn, oid, card.id),
                                  box=self._ctx.outbox(documents.org_doc(org)))
            txn.write(plan.writes)
            faults.hit("payment_methods.attach.after_write")
            return plan.result

        try:
            faults.hit("payment_methods.attach.after_stripe")
            done = self._ctx.uow.run(activate)
        except Exception:  # the activation failed and the process lives on: undo the attach
            self._compensate(oid, pending, card, key)
            raise
        except BaseException:
            # A cancellation, a timeout, Ctrl-C or an exit undoes nothing: the commit may still
            # land, and a card detached in Stripe can never be attached again. The record stays
            # pending with Stripe's id (if this write gets through), for a repeat of the
            # request or reconciliation to finish with this very card.
            try:
                self._while_pending(oid, pending, lambda m: plans.record_stripe_id(
                    oid, m, card.id, now()))
            except BaseException:  # noqa: BLE001 - interrupted again: reconciliation adopts it
                pass
            raise
        if done.undo:
            self._undo_in_stripe(card, key)
        if done.failure is not None:
            advice = f"; {done.advice}" if done.advice else ""
            raise PaymentError(f"attach request {request!r} failed: {done.failure}{advice}")
        return done.method

    def _attached_earlier(self, oid: Any, pending: PaymentMethod, customer: str
                                ) -> CardMethod:
        """The card an interrupted call of this request attached, as Stripe has it now;
        PaymentError (the record failed) when it is no longer on the org's customer."""
        assert pending.stripe_id is not None
        card = self._ctx.gateway.retrieve_payment_method(pending.stripe_id)
        if card.customer_id == customer:
            return card
        reason = (f"the card {card.id} this request attached earlier is no longer attached to "
                  "the org's Stripe customer")
        self._while_pending(oid, pending, lambda m: plans.fail(
            oid, m, reason, self._ctx.now()))
        raise PaymentError(f"attach request {pending.request_id!r} failed: {reason}; "
                           f"{plans.NEW_METHOD}")

    def _customer_gone(self, customer: str) -> bool:
        """Whether Stripe says the customer does not exist (asked again, as reconciliation
        does before forgetting one)."""
        try:
            self._ctx.gateway.list_payment_methods(customer)
        except PaymentMethodNotFound:
            return True
        except BillingError:
            pass  # unknown: Stripe's own error stands
        return False

    def _compensate(self, oid: Any, pending: PaymentMethod, card: CardMethod,
                          key: str) -> None:
        """After a failed activation: first write the record if it is still pending (its
        Stripe id), which serialises with an activation whose commit was still landing, so
        only one of them wins; a record then found active, or another holding the card, means
        nothing is undone in Stripe. Then undo the Stripe attach and mark the record failed;
        if Stripe fails, the pending record (with the Stripe id) is left for reconciliation,
        as is one whose state stayed unknown."""
        pid, now = ObjectId(pending.id), self._ctx.now

        def claim(txn: Transaction) -> bool:
            doc = method_doc_in(txn, oid, pid)
            if doc is None or doc["status"] != PaymentMethodStatus.PENDING.value:
                return False  # the activation committed after all (or another call settled it)
            current = documents.payment_method(doc)
            if method_doc_holding(txn, oid, card.id) is not None:
                txn.write(plans.fail(oid, current, "activation failed", now()))
                return False  # another record holds the card: nothing to undo in Stripe
            txn.write(plans.record_stripe_id(oid, current, card.id, now()))
            return True

        try:
            if not self._ctx.uow.run(claim):
                return
            self._ctx.gateway.detach(card.id, idempotency_key=f"{key}:undo")
            self._while_pending(oid, pending, lambda m: plans.fail(
                oid, m, "activation failed; detached in Stripe", now()))
        except BillingError:
            pass  # left pending: reconciliation finishes or undoes it from Stripe's state

    def _while_pending(self, oid: Any, pending: PaymentMethod,
                             plan: Callable[[PaymentMethod], list[Write]]) -> None:
        """Apply `plan` to the record only if it is still pending (read in the transaction)."""
        pid = ObjectId(pending.id)

        def work(txn: Transaction) -> None:
            doc = method_doc_in(txn, oid, pid)
            if doc is not None and doc["status"] == PaymentMethodStatus.PENDING.value:
                txn.write(plan(documents.payment_method(doc)))

        self._ctx.uow.run(work)

    def _undo_in_stripe(self, card: CardMethod, key: str) -> None:
        try:
            self._ctx.gateway.detach(card.id, idempotency_key=f"{key}:undo")
        except BillingError:
            pass  # attached to nothing of ours: reconciliation adopts or reports it

    def detach(self, org_id: Any, payment_method_id: Any) -> PaymentMethod:
        """Detach from the org and in Stripe. The org's default is cleared first (same
        transaction as marking the method `detaching`), then Stripe, then `detached`.
        Idempotent; a crash after the first step is finished by reconciliation or a repeat."""
        oid = ids.object_id(org_id, name="org_id")
        pid = ids.object_id(payment_method_id, name="payment_method_id")
        self._ctx.require_gateway()  # ConfigurationError now, before anything is written
        now = self._ctx.now

        def begin(txn: Transaction) -> PaymentMethod:
            org = require_org(org_doc_in(txn, oid), oid)
            method = plans.require_method(method_doc_in(txn, oid, pid), oid, pid)
            plan = plans.begin_detach(org, method, now())
            txn.write(plan.writes)
            return plan.result

        method = self._ctx.uow.run(begin)
        if method.status is PaymentMethodStatus.DETACHED:
            return method
        faults.hit("payment_methods.detach.after_mark")
        if method.stripe_id:
            try:
                self._ctx.gateway.detach(method.stripe_id,
                                               idempotency_key=f"pm-detach:{oid}:{pid}")
            except PaymentMethodNotFound:
                pass  # already gone in Stripe: the outcome we want
        faults.hit("payment_methods.detach.after_stripe")
        return self._ctx.uow.run(lambda txn: self._finish_detach(txn, oid, pid))

    def _finish_detach(self, txn: Transaction, oid: Any, pid: Any) -> PaymentMethod:
        method = plans.require_method(method_doc_in(txn, oid, pid), oid, pid)
        org = org_doc_in(txn, oid)
        plan = plans.finish_detach(oid, method, self._ctx.now(), box=self._ctx.outbox(org))
        txn.write(plan.writes)
        return plan.result

    def set_default(self, org_id: Any, payment_method_id: Any) -> PaymentMethod:
        """Make an active method, attached to the org's current Stripe customer, the org's
        default (InvalidTransition otherwise). Conflicts with a concurrent detach of the same
        method: whichever commits second sees the other's result."""
        oid = ids.object_id(org_id, name="org_id")
        pid = ids.object_id(payment_method_id, name="payment_method_id")

        def work(txn: Transaction) -> PaymentMethod:
            org = require_org(org_doc_in(txn, oid), oid)
            method = plans.require_method(method_doc_in(txn, oid, pid), oid, pid)
            txn.write(plans.set_default(org, method).writes)
            return method

        return self._ctx.uow.run(work)

    def list(self, org_id: Any) -> list[PaymentMethod]:
        """The org's active payment methods, oldest first."""
        oid = ids.object_id(org_id, name="org_id")
        docs = active_method_docs_now(self._ctx.uow.direct, oid)
        return [documents.payment_method(doc) for doc in docs]

