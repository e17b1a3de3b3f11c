# Generated from billing/_async by tools/synchro.py: do not edit.
"""Invoices: billing a period's conversations, finalising, voiding, reading."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from bson import ObjectId

from billing import faults, invoice_runs, plans
from billing._sync.payments import Payments, latest_payment
from billing._sync.repositories.conversations import count_late_in_period
from billing._sync.repositories.invoices import (
    invoices_of_period,
    read_billing_snapshot,
    read_invoice,
    read_period_usage,
)
from billing._sync.repositories.orgs import count_orgs, org_doc_in, org_ids_page
from billing._sync.repositories.payments import payment_docs_of_invoice
from billing._sync.service_context import Context
from billing._sync.unit_of_work import Transaction
from billing.adapters import documents, ids
from billing.domain.inputs import callback, flag
from billing.domain.models import Invoice, InvoiceStatus, LateUsage, Payment
from billing.domain.periods import Period
from billing.errors import InvalidInput, NothingToBill, TransientDatabaseError, shown
from billing.plans import invoices as invoice_plans
from billing.plans.reconciliation import late_target, late_usage

ORG_PAGE = 500  # org ids per read of an invoice run
LATE_ROUNDS = 5  # invoices one bill_late_usage call bills onto, or decides again for


class Invoices:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._payments = Payments(ctx)

    @property
    def payments(self) -> Payments:
        """The payment steps (`pay`, `settle`, `cancel`), shared with reconciliation."""
        return self._payments

    def pay(self, org_id: Any, invoice_id: Any) -> Payment:
        """Charge the invoice to the org's default payment method: see `AsyncPayments.pay`."""
        return self._payments.pay(org_id, invoice_id)

    def settle_payment(self, org_id: Any, invoice_id: Any) -> Payment | None:
        """Settle the latest payment attempt from Stripe's state: see `AsyncPayments.settle`."""
        return self._payments.settle(org_id, invoice_id)

    def cancel_payment(self, org_id: Any, invoice_id: Any) -> Payment | None:
        """Cancel the latest attempt if it can still move money: see `AsyncPayments.cancel`."""
        return self._payments.cancel(org_id, invoice_id)

    def create_for_period(
        self, org_id: Any, period_start: Any, period_end: Any, *, finalize: bool = True
    ) -> Invoice:
        """Bill the org's unbilled conversations that ended in [period_start, period_end).

        Guarantees: each transaction is all or nothing; at most `max_docs_per_transaction`
        conversations per transaction, collected onto a draft that is finalised (numbered and
        opened) only once every conversation is on it; idempotent and race-safe (a unique index
        allows one invoice per org and period: every caller gets that invoice); a call after a
        crash resumes the draft. Server round trips per transaction are constant: one snapshot
        read, one write, the commit.

        Each chunk reads on from the draft's `resume_after` key; a conversation recorded during
        the run with an end time behind that key (or at its very millisecond) is left for
        `bill_late_usage` (which reconciliation's `unbilled` check runs): it goes onto a
        supplementary invoice.

        Raises InvalidPeriod / PeriodNotClosed / InvalidInput for bad arguments, OrgNotFound,
        NothingToBill (no unbilled conversations and no invoice yet), CurrencyMismatch, and
        InvalidMoney (the period's total would exceed the largest storable amount), and
        TransientDatabaseError (retry). An error in the first transaction writes nothing; the
        overflow of a run of several chunks is checked for the whole period before the first
        one commits. An error in a later chunk (CurrencyMismatch after the org's currency
        changed, a transient failure) leaves the draft with the chunks so far, and the next call
        resumes it.
        """
        finalize = flag(finalize, name="finalize")
        oid = ids.object_id(org_id, name="org_id")
        period = Period.of(period_start, period_end, now=self._ctx.now())
        return self._bill(oid, period, supplement=0, finalize=finalize)

    def run_period(
        self, period: Period, *, org_id: Any = None, progress: invoice_runs.Progress | None = None
    ) -> invoice_runs.RunSummary:
        """Invoice every org (or one) for a closed period, one org at a time.

        An org's failure is recorded in the summary and the run goes on; re-running is safe
        (orgs already invoiced come back as `already_invoiced`). Errors that stop the whole run
        (DatabaseUnavailable: no server selectable within the client's serverSelectionTimeoutMS;
        bad configuration) are raised at once, never recorded org after org; orgs invoiced
        before stand, and rerunning finishes the rest.
        """
        progress = callback(progress, name="progress")
        period = self._closed(period)
        only = None if org_id is None else ids.object_id(org_id, name="org_id")
        total = count_orgs(self._ctx.uow.direct, only)
        summary = invoice_runs.RunSummary(period, self._ctx.now(), total)
        if only is not None and summary.total_orgs == 0:
            plans.require_org(None, only)
        for oid in self._org_ids(only):
            try:
                invoice = self._bill(oid, period, supplement=0, finalize=True)
                result = invoice_runs.result_of(str(oid), summary.started_at, invoice=invoice)
            except Exception as exc:
                if not invoice_runs.org_level(exc):
                    raise
                result = invoice_runs.result_of(str(oid), summary.started_at, error=exc)
            summary.results.append(result)
            if progress is not None:
                progress(len(summary.results), summary.total_orgs, result)
        summary.finished_at = self._ctx.now()
        return summary

    def _org_ids(self, only: ObjectId | None) -> Iterator[ObjectId]:
        """The ids of the orgs (or `only` that one), in `_id` order, read a page at a time
        (each read translated: a database lost mid-run raises DatabaseUnavailable)."""
        last = None
        while True:
            page = org_ids_page(self._ctx.uow.direct, org_id=only, after=last,
                                      limit=ORG_PAGE)
            if not page:
                return
            for last in page:
                yield last
            if len(page) < ORG_PAGE:
                return

    def _bill(
        self, org_id: ObjectId, period: Period, *, supplement: int, finalize: bool
    ) -> Invoice:
        invoice, _ = self._billing(org_id, period, supplement=supplement,
                                         finalize=finalize)
        return invoice

    def _billing(
        self, org_id: ObjectId, period: Period, *, supplement: int, finalize: bool
    ) -> tuple[Invoice, bool]:
        """The invoice, and whether this call wrote anything (False: it was already final, or
        a complete draft with nothing to add)."""
        def step(txn: Transaction) -> plans.Plan[Invoice]:
            limit = self._ctx.max_docs_per_transaction
            snap = read_billing_snapshot(txn, org_id, period, supplement=supplement,
                                               limit=limit, bound=not checked)
            if not checked and snap is not None and invoice_plans.more_chunks(
                    snap, period, limit):
                # More chunks follow: an overflow found in one of them would leave a draft that
                # every retry fails on, so the whole period is bounded before the first commits:
                # by the cheap bound, or where that cannot tell, by the exact usage.
                # (A snapshot read in one aggregate, on mongod, has no bound: exact usage.)
                bounded = invoice_plans.usage_bound(snap["bound"]) if "bound" in snap else None
                if bounded is None or not invoice_plans.fits(snap, bounded, org_id=org_id):
                    used = read_period_usage(txn, org_id, period)
                    invoice_plans.require_fits(snap, used, org_id=org_id, period=period,
                                               supplement=supplement)
            plan = invoice_plans.bill_chunk(
                snap, org_id=org_id, period=period, supplement=supplement,
                limit=self._ctx.max_docs_per_transaction, finalize=finalize, now=self._ctx.now(),
                retention=self._ctx.event_retention,
            )
            faults.hit("invoice.chunk.before_write")
            txn.write(plan.writes)
            faults.hit("invoice.chunk.after_write")
            return plan

        checked = False  # the whole period's total, by this call's first transaction
        wrote = False
        while True:
            plan = self._ctx.uow.run(step)
            checked = True
            wrote = wrote or bool(plan.writes)
            if plan.done:
                return plan.result, wrote
            faults.hit("invoice.between_chunks")

    def get(self, org_id: Any, invoice_id: Any) -> Invoice:
        """The invoice with its line items, read from one snapshot."""
        oid = ids.object_id(org_id, name="org_id")
        iid = ids.object_id(invoice_id, name="invoice_id")

        def read(txn: Transaction) -> Invoice:
            return read_invoice(txn, oid, iid)

        return self._ctx.uow.run(read)

    def payment_attempts(self, org_id: Any, invoice_id: Any) -> list[Payment]:
        """The invoice's payment attempts, oldest first, read from one snapshot;
        InvoiceNotFound when the org has no such invoice."""
        oid = ids.object_id(org_id, name="org_id")
        iid = ids.object_id(invoice_id, name="invoice_id")

        def read(txn: Transaction) -> list[Payment]:
            read_invoice(txn, oid, iid)
            docs = payment_docs_of_invoice(txn, oid, iid)
            return sorted((documents.payment(d) for d in docs), key=lambda p: p.attempt)

        return self._ctx.uow.run(read)

    def finalize(self, org_id: Any, invoice_id: Any) -> Invoice:
        """Open a draft with the org's next gapless number. A draft whose billing was interrupted
        is first completed, so a finalised invoice never misses conversations. Idempotent."""
        oid = ids.object_id(org_id, name="org_id")
        iid = ids.object_id(invoice_id, name="invoice_id")
        invoice = self.get(oid, iid)
        if invoice_plans.resumable(invoice):
            return self._bill(oid, Period(invoice.period_start, invoice.period_end),
                                    supplement=invoice.supplement, finalize=True)

        def work(txn: Transaction) -> Invoice:
            current = read_invoice(txn, oid, iid)
            org = org_doc_in(txn, oid)
            plan = invoice_plans.finalize(org, current, now=self._ctx.now(),
                                          retention=self._ctx.event_retention)
            txn.write(plan.writes)
            faults.hit("invoice.finalize.after_write")
            return plan.result

        return self._ctx.uow.run(work)

    def void(self, org_id: Any, invoice_id: Any) -> Invoice:
        """Void a draft, open or uncollectible invoice (paid ones cannot be). Its conversations
        stay billed by it: a conversation is billed once, ever. Idempotent.

        A payment that could still take money is stopped first (`cancel_payment`): an attempt
        awaiting 3-D Secure, never confirmed, or confirmed with its outcome unknown is canceled
        in Stripe and recorded; one whose intent may still be being created is abandoned, so
        that intent is never confirmed. If it had succeeded, the invoice is paid and
        InvalidTransition is raised. While a `pay` call holds the invoice, or the payment is
        `processing` (it cannot be canceled), PaymentInProgress (retryable);
        PaymentProviderUnavailable when Stripe cannot be asked."""
        oid = ids.object_id(org_id, name="org_id")
        iid = ids.object_id(invoice_id, name="invoice_id")
        if self._ctx.gateway_or_none is not None:
            self._payments.cancel(oid, iid)  # the latest attempt must be over

        def work(txn: Transaction) -> Invoice:
            invoice = read_invoice(txn, oid, iid)
            latest = latest_payment(txn, oid, iid, invoice)
            org = org_doc_in(txn, oid)
            plan = invoice_plans.void(invoice, latest, now=self._ctx.now(),
                                      box=self._ctx.outbox(org))
            txn.write(plan.writes)
            faults.hit("invoice.void.after_write")
            return plan.result

        return self._ctx.uow.run(work)

    def bill_late_usage(self, org_id: Any, period: Any) -> Invoice:
        """Bill the conversations of a closed period that are still unbilled (recorded late,
        after the period was invoiced) and return the invoice they went onto; what
        reconciliation's `unbilled` check runs.

        Where they go is decided from the period's invoices (billing.plans.reconciliation.
        late_target): onto the period's draft, or a new invoice when the period has none, else
        onto a supplementary invoice (`supplement` 1, 2, ...); never onto a finalised invoice.
        It is billed as `create_for_period` bills (bounded chunks, each all or nothing) and
        finalised (numbered, open), except a draft kept open for editing
        (`create_for_period(finalize=False)`), which stays a draft. A draft left part-billed is
        resumed where its run stopped; conversations recorded since with an end time behind
        where it stopped go, in the same call, onto the next invoice the rules pick (the
        invoice returned is the last one written).

        Idempotent and race-safe: each conversation is billed once, whoever calls (two calls
        at once, an invoice run, reconciliation); a call that finds its target finalised by
        another decides again. Raises InvalidInput (a malformed id, `period` not a
        billing.Period), InvalidPeriod / PeriodNotClosed, OrgNotFound, NothingToBill (nothing
        late: a repeat after a success), CurrencyMismatch, InvalidMoney, TransientDatabaseError;
        an error in the first transaction writes nothing."""
        oid = ids.object_id(org_id, name="org_id")
        closed = self._closed(period)
        direct = self._ctx.uow.direct
        billed: Invoice | None = None
        for _ in range(LATE_ROUNDS):
            target = late_target(invoices_of_period(direct, oid, closed))
            try:
                invoice, wrote = self._billing(oid, closed, supplement=target.supplement,
                                                     finalize=not target.keep_open)
            except NothingToBill:
                if billed is None:
                    raise
                return billed  # another call billed what this one counted as left
            if wrote:
                # A part-billed draft resumes where its run stopped: any recorded behind that
                # point since are still late, for the next invoice.
                billed = invoice
                if not count_late_in_period(direct, oid, closed):
                    return invoice
                continue
            if billed is not None:
                return billed
            if invoice.status is InvoiceStatus.DRAFT:
                raise NothingToBill(
                    f"org {oid} has no unbilled conversations that ended in {closed.label}: "
                    f"its draft {invoice.id} is unchanged")
            # Finalised by another call between the read and the billing: decide again.
        if billed is not None:
            return billed  # conversations keep arriving late: the next call bills them
        raise TransientDatabaseError(
            f"org {oid}'s invoices for {closed.label} kept changing while late usage was "
            "billed: retry the call")

    def late_usage(self, org_id: Any, period: Any) -> LateUsage:
        """What `bill_late_usage(org_id, period)` would bill now, read without writing: how
        many conversations are late and onto which invoice of the period they would go.
        Raises what `bill_late_usage` raises for bad input and OrgNotFound."""
        oid = ids.object_id(org_id, name="org_id")
        closed = self._closed(period)
        direct = self._ctx.uow.direct
        if count_orgs(direct, oid) == 0:
            plans.require_org(None, oid)
        existing = invoices_of_period(direct, oid, closed)
        return late_usage(oid, closed, existing, count_late_in_period(direct, oid, closed))

    def _closed(self, period: Any) -> Period:
        """`period` checked: a billing.Period that has ended."""
        if not isinstance(period, Period):
            raise InvalidInput(f"period must be a billing.Period (e.g. Period.month('2026-10')), "
                               f"got {shown(period)}")
        return Period.of(period.start, period.end, now=self._ctx.now())
