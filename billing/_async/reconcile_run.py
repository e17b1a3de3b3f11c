"""The reconciliation run: scan org by org, repair with --apply, hold the shard's lease, audit.

Detection streams orgs a page at a time by `_id` (org_scan.py, shared with collect) and
queries one org at a time on its indexes, so client memory depends on the largest org, not on
the data size. What each check finds and repairs is decided in
billing/plans/reconciliation. Each repair is its own transaction (or bounded invoice run)
and idempotent; the lease only keeps two runs from doing the same work at once, correctness
never depends on it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId

from billing._async.credit_notes import AsyncCreditNotes
from billing._async.invoices import AsyncInvoices
from billing._async.org_scan import orgs_of_run
from billing._async.reconcile_invoice_checks import AsyncBillingChecks
from billing._async.reconcile_payment_checks import AsyncPaymentChecks
from billing._async.reconcile_payment_method_checks import AsyncMethodChecks
from billing._async.reconcile_refund_checks import AsyncRefundChecks
from billing._async.repositories.org_pages import count_orgs_in_scope
from billing._async.repositories.orgs import org_exists, org_in_txn
from billing._async.repositories.payment_methods import org_has_methods
from billing._async.repositories.run_audits import (
    abandon_reconciliation_run,
    close_reconciliation_run,
    open_reconciliation_run,
)
from billing._async.run_lease import AsyncRunLease, lease_key
from billing._async.service_context import AsyncContext
from billing._async.unit_of_work import AsyncTransaction
from billing.adapters import documents, ids
from billing.domain.inputs import callback, flag
from billing.domain.periods import last_closed_month
from billing.errors import (
    BillingError,
    DatabaseUnavailable,
    InvalidInput,
    OrgNotFound,
    shown,
)
from billing.plans import events
from billing.plans import reconciliation as plan
from billing.reconcile_findings import (
    Check,
    Finding,
    OrgScan,
    ReconcileReport,
    lease_seconds_of,
    shard_of,
)

MAX_AUDITED_FINDINGS = 1000  # keeps an audit record far below MongoDB's 16 MB document limit
Progress = Callable[[int, int, OrgScan], None]


class AsyncReconciler:
    def __init__(self, ctx: AsyncContext, invoices: AsyncInvoices) -> None:
        self._ctx = ctx
        self._billing = AsyncBillingChecks(ctx, invoices)
        self._methods = AsyncMethodChecks(ctx)
        self._payments = AsyncPaymentChecks(ctx, invoices.payments)
        self._refunds = AsyncRefundChecks(ctx, AsyncCreditNotes(ctx))

    async def run(
        self,
        *,
        apply: bool = False,
        org_id: Any = None,
        checks: Iterable[Check | str] | None = None,
        shard: tuple[int, int] | str = (0, 1),
        progress: Progress | None = None,
        lease_seconds: float = 300.0,
        stale_after: timedelta = timedelta(minutes=15),
    ) -> ReconcileReport:
        """Find (and with `apply=True` repair) inconsistencies (policies:
        billing/plans/reconciliation).

        Dry run (the default) reads only: no repair, no lease, no audit record. With `apply`,
        the shard's lease is taken first (LeaseNotAcquired if another run holds it) and an
        audit record is written to `reconciliation_runs` before and after. A repair that fails
        is recorded on its finding (result "failed") and the run goes on, and so is a check that
        cannot finish for one org (bad data, a Stripe error): a "failed" finding of that org.
        Errors that stop the whole run (DatabaseUnavailable, KeyboardInterrupt) are raised after
        the audit record says so (status "failed", when the database can still be written) and
        the lease is released. A run that takes over an expired lease marks its dead holder's
        record "abandoned".
        """
        apply = flag(apply, name="apply")  # apply="false" is truthy: refused, never repairing
        progress = callback(progress, name="progress")
        selected = _checks(checks)
        part = shard_of(shard)
        oid = None if org_id is None else ids.object_id(org_id, name="org_id")
        lease_seconds = lease_seconds_of(lease_seconds)
        if not isinstance(stale_after, timedelta) or stale_after < timedelta(0):
            raise InvalidInput(f"stale_after must be a timedelta of 0 or more, "
                               f"got {shown(stale_after)}")
        await self._ctx.uow.check_server()
        if oid is not None:
            await self._require_org(oid, selected)
        now = self._ctx.now()
        report = ReconcileReport(str(ObjectId()), bool(apply), selected, part, now,
                                 last_closed_month(now).end)
        lease = AsyncRunLease(self._ctx, report.run_id, lease_key(part, oid),
                              lease_seconds) if apply else None
        try:
            if lease is not None:
                await lease.acquire()
                await self._close_abandoned(report, lease)
                await self._audit_start(report, oid)
            try:
                await self._scan(report, oid, progress, lease, stale_after)
            except BaseException as exc:
                report.finished_at = self._ctx.now()
                if lease is not None:
                    await self._audit_end(report, error=_describe(exc))
                raise
            report.finished_at = self._ctx.now()
            if lease is not None:
                await self._audit_end(report)
            return report
        finally:
            if lease is not None:
                await lease.release()

    # ---- the scan ---------------------------------------------------------------------------

    async def _scan(self, report: ReconcileReport, oid: ObjectId | None,
                    progress: Progress | None, lease: AsyncRunLease | None,
                    stale_after: timedelta) -> None:
        direct = self._ctx.uow.direct
        total = await count_orgs_in_scope(direct, oid)
        stale_before = report.started_at - stale_after
        if oid is not None and total == 0:  # a deleted org: only its payment methods remain
            await self._settle(report, await self._methods.orphans(only=oid))
            return
        async for done, _, doc in orgs_of_run(direct, oid, report.shard, lease, total=total):
            scan = await self._org(report, doc, stale_before)
            report.orgs_scanned += 1
            if progress is not None:
                progress(done, total, scan)
        if Check.MALFORMED in report.checks and (oid is not None or report.shard[0] == 0):
            # Once per run (by shard 0): these belong to no org, so no org's scan sees them.
            await self._settle(report, await self._billing.orgless(only=oid))
        if oid is None and Check.PAYMENT_METHOD in report.checks:
            await self._settle(report, await self._methods.orphans(shard=report.shard))

    async def _require_org(self, oid: ObjectId, checks: tuple[Check, ...]) -> None:
        """Checked before the lease: an unknown --org writes nothing. A deleted org still counts
        while it has payment methods (the payment_method check repairs them)."""
        direct = self._ctx.uow.direct
        if await org_exists(direct, oid):
            return
        if Check.PAYMENT_METHOD in checks and await org_has_methods(direct, oid):
            return
        raise OrgNotFound(f"org {oid} not found (nor payment methods of a deleted org {oid})")

    async def _org(self, report: ReconcileReport, doc: dict[str, Any],
                   stale_before: datetime) -> OrgScan:
        """The checks of one org, in repair order: links first (released conversations are then
        billed by `unbilled`), drafts before late conversations (they may bill them), usage
        quantities once billing is repaired. A check that fails is recorded on the org and the
        run goes on to the next org (an unreachable database stops it)."""
        oid: ObjectId = doc["_id"]
        b, before = self._billing, len(report.findings)
        links = b.links_of(oid)  # read once for two checks, again after a repair
        steps: list[tuple[Check, Callable[[], Awaitable[list[Finding]]]]] = [
            (Check.DANGLING_LINK, lambda: b.dangling(links)),
            (Check.WRONG_TOTALS, lambda: b.wrong_totals(oid)),
            (Check.STALE_DRAFT, lambda: b.stale_drafts(oid, stale_before)),
            (Check.UNBILLED, lambda: b.unbilled(oid, report.boundary)),
            (Check.USAGE_QUANTITY, lambda: b.usage_quantity(links)),
            (Check.MALFORMED, lambda: b.malformed(oid, report.boundary)),
            (Check.PAYMENT_METHOD, lambda: self._methods.scan(documents.org(doc), stale_before)),
            (Check.PAYMENT, lambda: self._payments.scan(oid, stale_before)),
            (Check.PAYMENT, lambda: self._refunds.scan(oid, stale_before)),
        ]
        for check, find in steps:
            if check not in report.checks:
                continue
            try:
                findings = await find()
                if report.apply and findings:
                    links.forget()  # what they repair may move links
                await self._settle(report, findings)
            except Exception as exc:
                error = _org_level(exc)
                report.findings.append(Finding(
                    check, str(oid), f"the {check.value} check of org {oid} could not finish",
                    0, [], "fix the cause and run again", repairable=False, result="failed",
                    error=_describe(error)))
                break
        return OrgScan(str(oid), report.findings[before:])

    async def _settle(self, report: ReconcileReport, findings: list[Finding]) -> None:
        """Record the findings; with --apply, repair each in its own transaction."""
        for finding in findings:
            report.findings.append(finding)
            if not report.apply:
                continue
            if not finding.repairable:
                finding.result = "reported"
                await self._tell(finding)
                continue
            try:
                done = await self._repair(finding)
                finding.action = f"{finding.action}: {done}"
                finding.result = "repaired"
            except DatabaseUnavailable:
                raise  # every later repair would fail the same way: the run stops
            except Exception as exc:
                finding.result, finding.error = "failed", _describe(_org_level(exc))
                await self._tell(finding)

    async def _repair(self, finding: Finding) -> str:
        repair = finding.repair
        if isinstance(repair, plan.SettlePayment):
            return await self._payments.repair(repair, finding.org_id)
        if isinstance(repair, plan.FinishRefund):
            return await self._refunds.repair(repair, finding.org_id)
        if isinstance(repair, plan.MethodRepair):
            return await self._methods.repair(repair, finding.org_id)
        if isinstance(repair, plan.BillingRepair):
            return await self._billing.repair(repair, finding.org_id)
        return "nothing to do"

    async def _tell(self, finding: Finding) -> None:
        """A finding left for a person becomes a `reconciliation.finding` event of its org (in a
        transaction of its own: the finding changed nothing). The audit record holds it anyway,
        so a failure to tell is not the run's failure."""
        if not ObjectId.is_valid(finding.org_id):
            return
        oid = ObjectId(finding.org_id)

        async def work(txn: AsyncTransaction) -> None:
            org = await org_in_txn(txn, oid)
            await txn.write(events.emit(self._ctx.outbox(org), [(
                "reconciliation.finding", {k: v for k, v in finding.as_json().items()
                                           if k != "org_id"})]))

        try:
            await self._ctx.uow.run(work)
        except DatabaseUnavailable:
            raise
        except BillingError:
            pass

    # ---- the audit record (plain writes, outside every repair transaction) -------------------

    async def _audit_start(self, report: ReconcileReport, oid: ObjectId | None) -> None:
        await open_reconciliation_run(self._ctx.uow.direct, {
            "_id": ObjectId(report.run_id), "status": "running", "mode": "apply",
            "org_id": oid, "checks": [c.value for c in report.checks],
            "shard": f"{report.shard[0]}/{report.shard[1]}", "boundary": report.boundary,
            "started_at": report.started_at, "host": socket.gethostname(), "pid": os.getpid()})

    async def _close_abandoned(self, report: ReconcileReport, lease: AsyncRunLease) -> None:
        """Close the audit record of the run whose expired lease this one took over: it died
        without closing it (SIGKILL, power cut), or it is too stuck to renew (if it wakes, it
        loses the lease at its next renewal and records `failed` itself)."""
        if lease.taken_from is None:
            return
        await abandon_reconciliation_run(self._ctx.uow.direct, lease.taken_from, {
            "status": "abandoned", "finished_at": self._ctx.now(),
            "errors": [f"abandoned: the run's lease expired without it closing this record "
                       f"(killed, or its host lost); run {report.run_id} took over. Its "
                       "repairs so far stand; later runs repair the rest"]})

    async def _audit_end(self, report: ReconcileReport, error: str | None = None) -> None:
        summary = report.as_json()
        findings = summary.pop("findings")
        actions = [{"check": f["check"], "org_id": f["org_id"], "ids": f["ids"],
                    "action": f["action"], "result": f["result"]}
                   for f in findings if f["result"] != "found"]
        try:
            await close_reconciliation_run(self._ctx.uow.direct, ObjectId(report.run_id), {
                "status": "failed" if error else "finished",
                "finished_at": report.finished_at,
                "duration_s": summary["duration_s"], "orgs_scanned": report.orgs_scanned,
                "counts": summary["counts"], "outstanding": summary["outstanding"],
                "findings": findings[:MAX_AUDITED_FINDINGS],
                "findings_truncated": len(findings) > MAX_AUDITED_FINDINGS,
                "actions": actions[:MAX_AUDITED_FINDINGS],
                "errors": [f"{f['check']} {f['org_id']}: {f['error']}"
                           for f in findings if f.get("error")][:MAX_AUDITED_FINDINGS]
                + ([f"run stopped: {error}"] if error else [])})
        except BillingError:
            if error is None:
                raise  # the run itself succeeded: a lost audit record is worth an error


def _checks(checks: Iterable[Check | str] | None) -> tuple[Check, ...]:
    if checks is None:
        return tuple(Check)
    if isinstance(checks, str):
        checks = [checks]
    if not isinstance(checks, list | tuple | set | frozenset):
        raise InvalidInput(f"checks must be a list of check names, got {shown(checks)}")
    chosen = set()
    for c in checks:
        try:
            chosen.add(Check(c))
        except (ValueError, TypeError):
            raise InvalidInput(f"unknown check {shown(c)}; choose from "
                               f"{', '.join(k.value for k in Check)}") from None
    if not chosen:
        raise InvalidInput("no check chosen")
    return tuple(c for c in Check if c in chosen)


def _org_level(exc: Exception) -> Exception:
    """The error to record on one org's finding; re-raises what must stop the whole run."""
    if isinstance(exc, DatabaseUnavailable):
        raise exc
    return exc


def _describe(exc: BaseException) -> str:
    message = exc.message if isinstance(exc, BillingError) else str(exc)
    if isinstance(exc, KeyboardInterrupt):  # Ctrl-C, or SIGTERM as the CLI raises it
        message = message or "interrupted (SIGINT)"
    return f"{type(exc).__name__}: {message}"
