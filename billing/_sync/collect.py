# Generated from billing/_async by tools/synchro.py: do not edit.
"""Collection (dunning): charge every open invoice that is due under its org's retry schedule.

One attempt per due invoice per run, through `payments.pay`, so the payment rule holds whoever
else pays (the host's own `pay()`, another run on an overlapping shard): never two attempts at
once, never a new intent while one can still move money. A dry run only reads.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from bson import ObjectId

from billing._sync.org_scan import orgs_of_run
from billing._sync.payments import Payments
from billing._sync.repositories.invoices import invoice_status, open_invoices_of_org
from billing._sync.repositories.orgs import org_exists
from billing._sync.repositories.payments import attempts_per_invoice
from billing._sync.repositories.run_audits import abandon_collection_run, record_collection_run
from billing._sync.run_lease import RunLease, lease_key
from billing._sync.service_context import Context
from billing.adapters import ids
from billing.collection_runs import Collected, CollectionReport, OrgCollection, Progress, Result
from billing.domain.inputs import callback, flag
from billing.domain.models import Invoice, PaymentStatus
from billing.errors import (
    BillingError,
    CardDeclined,
    DatabaseUnavailable,
    InvoiceNotPayable,
    NoDefaultPaymentMethod,
    OrgNotFound,
    PaymentError,
    PaymentInProgress,
    PaymentProviderUnavailable,
    PaymentRequiresAction,
)
from billing.plans import collections as plan
from billing.plans.payments import PAYABLE
from billing.reconcile_findings import lease_seconds_of, shard_of


class Collections:
    def __init__(self, ctx: Context, payments: Payments) -> None:
        self._ctx = ctx
        self._payments = payments

    def run(self, *, apply: bool = False, org_id: Any = None,
                  shard: tuple[int, int] | str = (0, 1), progress: Progress | None = None,
                  lease_seconds: float = 300.0) -> CollectionReport:
        """Find the open invoices due for an attempt (and with `apply=True` charge them).

        Dry run (default): reads only, lists what would be charged and the amount. With
        `apply`, the shard's lease is taken first (LeaseNotAcquired if another collect run
        holds it; `reconciliation_leases`, `_id` `collect:shard:I/N`), each due invoice gets one
        attempt, and an audit record is written to `collection_runs` before and after. One
        invoice's failure is recorded on its line and the run goes on; an unreachable database
        stops it (DatabaseUnavailable). A run that takes over an expired lease marks its dead
        holder's record "abandoned"."""
        apply = flag(apply, name="apply")  # apply="false" is truthy: refused, never charging
        progress = callback(progress, name="progress")
        part = shard_of(shard)
        oid = None if org_id is None else ids.object_id(org_id, name="org_id")
        lease_seconds = lease_seconds_of(lease_seconds)
        if apply:
            self._ctx.require_gateway()  # ConfigurationError before anything is read or written
        self._ctx.uow.check_server()
        if oid is not None and not org_exists(self._ctx.uow.direct, oid):
            raise OrgNotFound(f"no org {oid}: check the org id and the database")
        report = CollectionReport(str(ObjectId()), bool(apply), part, self._ctx.now())
        lease = RunLease(self._ctx, report.run_id, lease_key(part, oid, kind="collect"),
                              lease_seconds, what="collect run") if apply else None
        try:
            if lease is not None:
                lease.acquire()
                self._close_abandoned(report, lease)
                self._audit(report, "running")
            try:
                self._scan(report, oid, progress, lease)
            except BaseException as exc:
                report.finished_at = self._ctx.now()
                if lease is not None:
                    self._audit(report, "failed", error=f"{type(exc).__name__}: {exc}")
                raise
            report.finished_at = self._ctx.now()
            if lease is not None:
                self._audit(report, "finished")
            return report
        finally:
            if lease is not None:
                lease.release()

    def _close_abandoned(self, report: CollectionReport, lease: RunLease) -> None:
        """Close the audit record of the run whose expired lease this one took over: it died
        without closing it (SIGKILL, power cut), or it is too stuck to renew (if it wakes, it
        loses the lease at its next renewal and records `failed` itself)."""
        if lease.taken_from is None:
            return
        abandon_collection_run(self._ctx.uow.direct, lease.taken_from, {
            "status": "abandoned", "finished_at": self._ctx.now(),
            "error": f"abandoned: the run's lease expired without it closing this record "
                     f"(killed, or its host lost); run {report.run_id} took over. Its charges "
                     "so far stand; later runs collect the rest"})

    def _scan(self, report: CollectionReport, oid: ObjectId | None,
                    progress: Progress | None, lease: RunLease | None) -> None:
        orgs = orgs_of_run(self._ctx.uow.direct, oid, report.shard, lease)
        for done, total, doc in orgs:
            error = None
            try:
                items = self._org(report, doc)
            except DatabaseUnavailable:
                raise  # every later org would fail the same way: the run stops
            except Exception as exc:  # one org's bad data never stops the run for the others
                items, error = [], f"{type(exc).__name__}: {_message(exc)}"
                report.errors.append({"org_id": str(doc["_id"]), "error": error})
            report.items += items
            report.orgs_scanned += 1
            if progress is not None:
                progress(done, total, OrgCollection(str(doc["_id"]), items, error))

    def _org(self, report: CollectionReport, doc: dict[str, Any]) -> list[Collected]:
        oid: ObjectId = doc["_id"]
        invoices = open_invoices_of_org(self._ctx.uow.direct, oid)
        if not invoices:
            return []
        attempts = attempts_per_invoice(self._ctx.uow.direct, oid, [i.id for i in invoices])
        days = tuple(doc.get("collection_schedule") or self._ctx.collection_schedule)
        default = doc.get("default_payment_method_id")
        items = []
        for inv in invoices:
            due = plan.due(inv, attempts.get(inv.id, []), str(default) if default else None,
                           days, now=report.started_at)
            if due.state is plan.State.DONE:
                continue
            item = Collected(str(oid), inv.id, inv.number, inv.amount_due, inv.currency,
                             due.attempt, _RESULTS[due.state], due.at, due.reason)
            try:
                if report.apply and due.state is plan.State.DUE:
                    if not self._charge(inv, item):
                        continue
                elif report.apply and due.state is plan.State.WAITING:
                    if not self._settle(inv, item):
                        continue
            except DatabaseUnavailable:
                raise
            except Exception as exc:  # one bad invoice: the org's others (and charges) stay
                item.result, item.detail = Result.FAILED, f"{type(exc).__name__}: {_message(exc)}"
            items.append(item)
        return items

    def _charge(self, inv: Invoice, item: Collected) -> bool:
        """One attempt on a due invoice, its outcome into `item`. False when the invoice left
        collection since this run read it (paid, or voided, by another call or run): nothing
        was charged, and the run reports it no more than one it had found paid."""
        try:
            payment = self._payments.pay(inv.org_id, inv.id)
            # What was charged: the amount due when charged, not when this run read it (a
            # credit note may have lowered it since).
            item.amount = payment.amount
            item.result, item.detail = Result.PAID, f"payment {payment.id}"
        except DatabaseUnavailable:
            raise
        except PaymentRequiresAction as exc:
            item.result, item.detail = Result.WAITING, exc.message
        except PaymentProviderUnavailable as exc:
            # Not a decline: Stripe did not answer. An attempt it may hold waits for its state.
            item.result = Result.WAITING if exc.payment_id else Result.FAILED
            item.detail = exc.message
        except PaymentInProgress as exc:
            # Blocked by an attempt Stripe holds (its status is the code), or by a live call.
            item.result = Result.WAITING if exc.code else Result.BUSY
            item.detail = exc.message
        except NoDefaultPaymentMethod as exc:
            item.result, item.detail = Result.NEEDS_METHOD, exc.message
        except (CardDeclined, PaymentError) as exc:
            item.result, item.detail = Result.DECLINED, exc.message
        except InvoiceNotPayable as exc:
            try:
                now = invoice_status(self._ctx.uow.direct, ObjectId(inv.org_id),
                                           ObjectId(inv.id))
            except DatabaseUnavailable:
                raise
            except BillingError:
                now = inv.status  # unknown: report the refusal
            if now not in PAYABLE:
                return False
            item.result, item.detail = Result.FAILED, f"{type(exc).__name__}: {exc.message}"
        except BillingError as exc:
            item.result, item.detail = Result.FAILED, f"{type(exc).__name__}: {exc.message}"
        return True

    def _settle(self, inv: Invoice, item: Collected) -> bool:
        """An attempt still open: ask Stripe how it ended (a lost webhook, a run killed after
        confirming), its outcome into `item`. Never a new charge: that waits for the schedule.
        False when the attempt succeeded since this run read it, settled by another call, run
        or webhook: the run reports it no more than one it had found paid (nor does it count
        money another one reports)."""
        try:
            payment, settled_here = self._payments.settle_reporting(inv.org_id, inv.id)
        except DatabaseUnavailable:
            raise
        except PaymentInProgress as exc:
            item.result, item.detail = Result.BUSY, exc.message
            return True
        except BillingError as exc:
            item.detail = f"{item.detail}; not settled: {type(exc).__name__}: {exc.message}"
            return True
        if payment is None:
            return True
        if payment.status is PaymentStatus.SUCCEEDED:
            if not settled_here:
                return False
            item.amount = payment.amount
            item.result, item.detail = Result.PAID, f"payment {payment.id}, settled from Stripe"
        elif payment.status in (PaymentStatus.FAILED, PaymentStatus.CANCELED):
            item.result = Result.DECLINED
            item.detail = f"payment {payment.id} ended {payment.status.value}"
        return True

    def _audit(self, report: CollectionReport, status: str, *,
                     error: str | None = None) -> None:
        """The run's record in `collection_runs`, written outside any payment transaction."""
        doc = {"status": status, "mode": "apply", "shard": f"{report.shard[0]}/{report.shard[1]}",
               "started_at": report.started_at, "finished_at": report.finished_at,
               "orgs_scanned": report.orgs_scanned, "counts": report.counts,
               "charged": report.charged(), "error": error, "org_errors": report.errors[:1000],
               "host": socket.gethostname(),
               "pid": os.getpid(),
               "invoices": [i.as_json() for i in report.items[:1000]]}
        record_collection_run(self._ctx.uow.direct, ObjectId(report.run_id), doc)


def _message(exc: Exception) -> str:
    """An error's message, short: a validation error lists every field it checked."""
    text = exc.message if isinstance(exc, BillingError) else str(exc)
    return text if len(text) <= 500 else text[:500] + "..."


_RESULTS = {
    plan.State.DUE: Result.WOULD_CHARGE,
    plan.State.NOT_YET: Result.NOT_DUE,
    plan.State.WAITING: Result.WAITING,
    plan.State.NEEDS_METHOD: Result.NEEDS_METHOD,
}
