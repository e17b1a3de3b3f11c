# Generated from billing/_async by tools/synchro.py: do not edit.
"""Reconciliation of billing links: detection per org on indexes, one transaction per repair.

Each check reads through the repositories and hands what it read to the plans (billing/plans/
reconciliation: billing_links and invoices), which decide the findings and their repairs; a
repair reads again in its own transaction (or bounded invoice run) and writes what the plan
decides from that snapshot.
"""

from __future__ import annotations

from datetime import datetime
from functools import partial

from bson import ObjectId

from billing import faults
from billing._sync.invoices import Invoices
from billing._sync.payments import latest_payment
from billing._sync.repositories.conversations import (
    count_linked_to,
    link_span,
    links_per_line_item,
    malformed_linked_to,
    malformed_of_org,
    orgless_conversations,
    unbilled_per_month,
)
from billing._sync.repositories.invoices import (
    incomplete_drafts_of_org,
    invoice_ids_of_org,
    invoice_status_in,
    invoice_totals_of_org,
    invoices_counting,
    invoices_spanning,
    read_invoice,
)
from billing._sync.repositories.line_items import (
    count_line_item_of_org,
    line_item_amounts_of_org,
    line_item_in_any_org,
    line_item_invoices_of_org,
    line_item_of_org,
    line_item_owners,
    line_item_quantities_of_org,
)
from billing._sync.service_context import Context
from billing._sync.unit_of_work import Transaction
from billing.domain.models import InvoiceStatus
from billing.domain.periods import Period
from billing.errors import NothingToBill
from billing.plans import reconciliation as plan
from billing.reconcile_findings import Finding


class OrgLinks:
    """One org's billed conversations counted per line item, read once for the checks of one
    scan that use them (`dangling`, `usage_quantity`: detection reads outside any snapshot; a
    mismatch is confirmed in a transaction before it is reported). `forget` after anything
    that may have moved links, such as a repair."""

    def __init__(self, ctx: Context, oid: ObjectId) -> None:
        self._ctx, self.oid = ctx, oid
        self._linked: dict[ObjectId, int] | None = None

    def read(self) -> dict[ObjectId, int]:
        if self._linked is None:
            self._linked = links_per_line_item(self._ctx.uow.direct, self.oid)
        return self._linked

    def forget(self) -> None:
        self._linked = None


class BillingChecks:
    def __init__(self, ctx: Context, invoices: Invoices) -> None:
        self._ctx = ctx
        self._invoices = invoices

    def links_of(self, oid: ObjectId) -> OrgLinks:
        """A reader of the org's links for one scan (see AsyncOrgLinks)."""
        return OrgLinks(self._ctx, oid)

    # ---- detection -----------------------------------------------------------------------------

    def dangling(self, links: OrgLinks) -> list[Finding]:
        """Billed conversations whose line item is missing; line items whose invoice is missing."""
        direct, oid = self._ctx.uow.direct, links.oid
        linked = links.read()
        items = line_item_invoices_of_org(direct, oid)
        missing = plan.missing_items(linked, items)
        elsewhere = line_item_owners(direct, missing)
        broken = {item_id: malformed_linked_to(direct, oid, item_id)
                  for item_id in missing if item_id not in elsewhere}
        invoices = invoice_ids_of_org(direct, oid) if items else set()
        return plan.dangling(oid, linked, items, elsewhere, broken, invoices)

    def wrong_totals(self, oid: ObjectId) -> list[Finding]:
        direct = self._ctx.uow.direct
        invoices = invoice_totals_of_org(direct, oid)
        return plan.wrong_totals(oid, invoices, line_item_amounts_of_org(direct, oid))

    def stale_drafts(self, oid: ObjectId, before: datetime) -> list[Finding]:
        return plan.stale_drafts(oid, incomplete_drafts_of_org(self._ctx.uow.direct, oid),
                                 before)

    def unbilled(self, oid: ObjectId, boundary: datetime) -> list[Finding]:
        return plan.unbilled(oid, unbilled_per_month(self._ctx.uow.direct, oid, boundary))

    def malformed(self, oid: ObjectId, boundary: datetime) -> list[Finding]:
        """Conversations billing cannot price, and those that break the contract's types."""
        return plan.malformed(oid, malformed_of_org(self._ctx.uow.direct, oid, boundary))

    def orgless(self, only: ObjectId | None = None) -> list[Finding]:
        """Conversations whose `org_id` names no org: no org's scan sees them."""
        return [f for kind, group in orgless_conversations(self._ctx.uow.direct, only)
                for f in plan.orgless(only, kind, group)]

    def usage_quantity(self, links: OrgLinks) -> list[Finding]:
        """Conversations line items whose quantity is not the number of conversations linked to
        them; a mismatch is confirmed on one snapshot (a chunk may commit between the reads)."""
        direct, oid = self._ctx.uow.direct, links.oid
        linked = links.read()
        suspects = plan.usage_suspects(linked, line_item_quantities_of_org(direct, oid))
        out = []
        for item in suspects:
            confirmed = self._ctx.uow.run(partial(self._usage_of, oid=oid,
                                                        iid=item["_id"]))
            if confirmed is not None:
                out.append(confirmed)
        return out

    @staticmethod
    def _usage_of(txn: Transaction, *, oid: ObjectId, iid: ObjectId
                        ) -> Finding | None:
        item = line_item_of_org(txn, oid, iid)
        status = invoice_status_in(txn, oid, item["invoice_id"]) if item else None
        return plan.usage_mismatch(oid, item, count_linked_to(txn, oid, iid), status)

    # ---- repairs (each its own transaction or bounded invoice run) ---------------------------

    def repair(self, repair: plan.BillingRepair, org_id: str) -> str:
        oid = ObjectId(org_id)
        match repair:
            case plan.ReleaseLinks() | plan.DeleteOrphanItem():
                return self._ctx.uow.run(partial(self._release, oid=oid, repair=repair))
            case plan.Retotal(invoice_id=iid):
                return self._ctx.uow.run(partial(self._retotal, oid=oid, iid=iid))
            case plan.ResumeDraft(period=period):
                try:
                    inv = self._invoices.bill_late_usage(oid, period)
                except NothingToBill:
                    return "already finalised"
                if inv.status is InvoiceStatus.DRAFT:
                    return f"billed onto invoice {inv.id} (still a draft)"
                return f"finalised invoice {inv.id} number {inv.number}"
            case plan.BillLate(period=period):
                return self._bill_late(oid, period)

    def _release(self, txn: Transaction, *, oid: ObjectId,
                       repair: plan.ReleaseLinks | plan.DeleteOrphanItem) -> str:
        item_id = repair.line_item_id
        orphan = isinstance(repair, plan.DeleteOrphanItem)
        span = link_span(txn, oid, item_id)
        n = span["n"] if span else 0
        if not orphan and span is not None:
            if plan.owned_elsewhere(line_item_in_any_org(txn, item_id), oid, item_id, n):
                return "already consistent"
            # The invoices whose period holds the links' end times; when none of them lacks its
            # item, those counting as many conversations (an end time moved since billing must
            # not hide the invoice, nor may another period's invoice take its item).
            candidates = [i for i in invoices_spanning(txn, oid, span["first"],
                                                             span["last"])
                          if plan.lacking_item(i)] or [
                i for i in invoices_counting(txn, oid, n) if plan.lacking_item(i)]
            restored = plan.restoration(candidates, item_id, n)
            if restored is not None:
                txn.write(plan.restore(restored))
                faults.hit("reconcile.release.after_write")
                return f"restored the line item on invoice {restored.invoice_id}"
        txn.write(plan.release(oid, item_id, n, orphan_count=count_line_item_of_org(
            txn, oid, item_id) if orphan else None))
        faults.hit("reconcile.release.after_write")
        return f"released {n} conversations" + (", deleted the line item" if orphan else "")

    def _retotal(self, txn: Transaction, *, oid: ObjectId, iid: ObjectId) -> str:
        invoice = read_invoice(txn, oid, iid)
        if not plan.totals_differ(invoice):
            return "already consistent"
        fixed = plan.retotal(invoice, latest_payment(txn, oid, iid, invoice))
        txn.write(fixed.writes)
        faults.hit("reconcile.retotal.after_write")
        return f"totals set to {fixed.result}"

    def _bill_late(self, oid: ObjectId, period: Period) -> str:
        """Onto the month's draft (or a new invoice), else a supplementary invoice."""
        try:
            inv = self._invoices.bill_late_usage(oid, period)
        except NothingToBill:
            return "nothing left to bill"
        kind = "supplementary invoice" if inv.supplement else "invoice"
        number = "still a draft" if inv.status is InvoiceStatus.DRAFT else f"number {inv.number}"
        return f"billed onto {kind} {inv.id} ({number})"
