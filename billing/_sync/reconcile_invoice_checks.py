# Generated from billing/_async by tools/synchro.py: do not edit.
"""Reconciliation of billing links: detection per org on indexes, one transaction per repair."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from bson import ObjectId

from billing import faults
from billing._sync.invoices import Invoices
from billing._sync.payments import latest_payment
from billing._sync.repositories.invoices import read_invoice
from billing._sync.service_context import Context
from billing._sync.unit_of_work import Transaction
from billing.adapters import documents, queries, schema
from billing.adapters.writes import Write, insert, invoice_changes
from billing.domain import invoicing
from billing.domain.models import InvoiceStatus, LineItemKind
from billing.domain.periods import Period, next_month
from billing.errors import NothingToBill, StateConflict
from billing.plans.invoices import UNSETTLED
from billing.reconcile_findings import SAMPLE_IDS, Check, Finding, restored_item

Doc = dict[str, Any]


class BillingChecks:
    def __init__(self, ctx: Context, invoices: Invoices) -> None:
        self._ctx = ctx
        self._invoices = invoices

    def _db(self) -> Any:
        return self._ctx.uow.db

    def _aggregate(self, collection: str, pipeline: list[Doc]) -> list[Doc]:
        cursor = self._db()[collection].aggregate(pipeline)
        rows: list[Doc] = cursor.to_list()
        return rows

    # ---- detection -----------------------------------------------------------------------------

    def _linked(self, oid: ObjectId) -> dict[ObjectId, int]:
        """The org's billed conversations counted per line item."""
        groups = self._aggregate(schema.CONVERSATIONS, [
            {"$match": {"org_id": oid, "line_item_id": queries.ANY_OBJECT_ID}},
            {"$group": {"_id": "$line_item_id", "n": {"$sum": 1}}}])
        return {g["_id"]: g["n"] for g in groups if isinstance(g["_id"], ObjectId)}

    def dangling(self, oid: ObjectId) -> list[Finding]:
        """Billed conversations whose line item is missing; line items whose invoice is missing."""
        out: list[Finding] = []
        linked = self._linked(oid)
        items = self._db()[schema.LINE_ITEMS].find(
            {"org_id": oid}, {"invoice_id": 1}).to_list()
        known = {i["_id"] for i in items}
        missing = [item_id for item_id in linked if item_id not in known]
        elsewhere = {d["_id"]: d["org_id"] for d in self._db()[schema.LINE_ITEMS].find(
            queries.line_items_in_any_org(missing), {"org_id": 1}).hint("_id_").to_list()
        } if missing else {}
        for item_id in missing:
            n = linked[item_id]
            if item_id in elsewhere:
                out.append(Finding(
                    Check.DANGLING_LINK, str(oid), f"{n} conversations of org {oid} are billed on "
                    f"line item {item_id} of org {elsewhere[item_id]}", n, [str(item_id)],
                    "report: their org_id was changed after billing or is not one id; a person "
                    "must decide which org they belong to (they stay billed)", repairable=False))
                continue
            broken = self._aggregate(schema.CONVERSATIONS, [
                {"$match": {"org_id": oid, "line_item_id": item_id}},
                {"$match": {"$nor": [queries.WELL_FORMED]}}, {"$group": {"_id": None, "n": {
                    "$sum": 1}}}])
            if broken:
                out.append(Finding(
                    Check.DANGLING_LINK, str(oid), f"{n} conversations point to missing line "
                    f"item {item_id}, {broken[0]['n']} of them malformed", n, [str(item_id)],
                    "report: the host must fix them before they can be released",
                    repairable=False))
                continue
            out.append(Finding(
                Check.DANGLING_LINK, str(oid), f"{n} conversations point to missing line "
                f"item {item_id}", n, [str(item_id)],
                "restore the line item from its invoice, or release them to be billed again",
                params={"line_item_id": item_id, "orphan": False}))
        # The org's invoice ids on the org_id index, joined here: a `$in` list of ids made
        # SecantusDB walk the `_id` index once per id.
        found = {d["_id"] for d in self._db()[schema.INVOICES].find(
            {"org_id": oid}, {"_id": 1}).to_list()} if items else set()
        for item in items:
            if item["invoice_id"] not in found:
                n = linked.get(item["_id"], 0)
                out.append(Finding(
                    Check.DANGLING_LINK, str(oid), f"line item {item['_id']} belongs to missing "
                    f"invoice {item['invoice_id']} ({n} conversations)", max(n, 1),
                    [str(item["_id"])], "delete the line item; release its conversations",
                    params={"line_item_id": item["_id"], "orphan": True}))
        return out

    def wrong_totals(self, oid: ObjectId) -> list[Finding]:
        # The org's invoices and line items, each read on its org_id index and joined here: a
        # $lookup made SecantusDB read line items once per invoice.
        rows = self._db()[schema.INVOICES].find(
            {"org_id": oid}, {"status": 1, "subtotal": 1, "total": 1}).to_list()
        sums: dict[Any, int] = {}
        for item in self._db()[schema.LINE_ITEMS].find(
                {"org_id": oid}, {"invoice_id": 1, "amount": 1}):
            sums[item["invoice_id"]] = sums.get(item["invoice_id"], 0) + item["amount"]
        out = []
        for r in rows:
            r["sum"] = sums.get(r["_id"], 0)
            if r["subtotal"] != r["sum"] or r["total"] != r["sum"]:
                closed = r["status"] in (InvoiceStatus.PAID.value, InvoiceStatus.VOID.value)
                out.append(Finding(
                    Check.WRONG_TOTALS, str(oid), f"invoice {r['_id']} ({r['status']}) totals "
                    f"{r['subtotal']}/{r['total']} but its line items sum to {r['sum']}", 1,
                    [str(r["_id"])], "report: money has moved or the invoice is closed" if closed
                    else "recompute totals from line items", repairable=not closed,
                    params={"invoice_id": r["_id"]}))
        return out

    def stale_drafts(self, oid: ObjectId, before: datetime) -> list[Finding]:
        drafts = self._db()[schema.INVOICES].find(
            {"org_id": oid, "status": "draft", "complete": False}).to_list()
        # Age is checked here: SecantusDB plans a collection scan when a predicate on an
        # unindexed field joins the indexed ones (mongod uses the index); drafts are few.
        docs = [d for d in drafts if d["created_at"] < before]
        return [Finding(
            Check.STALE_DRAFT, str(oid), f"draft {d['_id']} for {_label(d)} was left "
            "part-billed by an interrupted run", 1, [str(d["_id"])], "resume and finalise",
            params={"period": Period(d["period_start"], d["period_end"]),
                    "supplement": d["supplement"]}) for d in docs]

    def unbilled(self, oid: ObjectId, boundary: datetime) -> list[Finding]:
        rows = self._aggregate(schema.CONVERSATIONS, [
            {"$match": {"org_id": oid, "line_item_id": None, "ended_at": {"$lt": boundary}}},
            {"$match": queries.WELL_FORMED},  # a stage of its own: see queries.billing_snapshot
            {"$group": {"_id": {"y": {"$year": "$ended_at"}, "m": {"$month": "$ended_at"}},
                        # $firstN (MongoDB 5.2+): a sample without holding a month's ids.
                        "n": {"$sum": 1}, "ids": {"$firstN": {"input": "$_id",
                                                             "n": SAMPLE_IDS}}}},
            {"$sort": {"_id.y": 1, "_id.m": 1}}])
        out = []
        for r in rows:
            start = datetime(r["_id"]["y"], r["_id"]["m"], 1, tzinfo=UTC)
            period = Period(start, next_month(start))
            noun = "conversation" if r["n"] == 1 else "conversations"
            out.append(Finding(
                Check.UNBILLED, str(oid), f"{r['n']} unbilled {noun} ended in {period.label}",
                r["n"], [str(i) for i in r["ids"]], "bill onto the month's draft, or a "
                "supplementary invoice if it is final", params={"period": period}))
        return out

    def malformed(self, oid: ObjectId, boundary: datetime) -> list[Finding]:
        """Conversations billing cannot price, and those that break the contract's types.

        One pass over the org's conversations on the index's `org_id` prefix: "any type but
        null or an ObjectId" has no index bounds (see queries.BROKEN_CONTRACT)."""
        times = {"line_item_id": None, "$or": [
            {"$expr": {"$ne": [{"$type": "$ended_at"}, "date"]}},
            {"ended_at": {"$lt": boundary}, "$nor": [queries.WELL_FORMED]}]}
        rows = self._aggregate(schema.CONVERSATIONS, [
            {"$match": {"org_id": oid}},
            {"$match": {"$or": [{"$expr": queries.BROKEN_CONTRACT}, times]}},
            {"$group": {"_id": {"$cond": [queries.BROKEN_CONTRACT, "contract", "times"]},
                        "n": {"$sum": 1}, "ids": {"$push": "$_id"}}},
            {"$project": {"n": 1, "ids": {"$slice": ["$ids", SAMPLE_IDS]}}},
            {"$sort": {"_id": -1}}])
        texts = {
            "times": "cannot be priced (started_at or ended_at not one date, or it ends before "
                     "it starts)",
            "contract": "break the data contract (line_item_id neither null nor an ObjectId, "
                        "or org_id not one ObjectId): billing skips them",
        }
        return [Finding(Check.MALFORMED, str(oid), f"{r['n']} conversations {texts[r['_id']]}",
                        r["n"], [str(i) for i in r["ids"]], "report: the host must fix them",
                        repairable=False) for r in rows]

    def orgless(self, only: ObjectId | None = None) -> list[Finding]:
        """Conversations whose `org_id` names no org (a string, a number, null, missing): no
        org's scan sees them. Each query is a type-bracketed range on the index; with `only`,
        the one org's id written as a string."""
        out = []
        kinds = queries.ORGLESS if only is None else (("a string", {"org_id": str(only)}),)
        for kind, match in kinds:
            rows = self._aggregate(schema.CONVERSATIONS, [
                {"$match": match},
                {"$group": {"_id": None, "n": {"$sum": 1}, "ids": {"$push": "$_id"},
                            "orgs": {"$addToSet": "$org_id"}}},
                {"$project": {"n": 1, "ids": {"$slice": ["$ids", SAMPLE_IDS]},
                              "orgs": {"$slice": ["$orgs", 5]}}}])
            if rows:
                r = rows[0]
                seen = ", ".join(repr(o) for o in r["orgs"] if o is not None)
                out.append(Finding(
                    Check.MALFORMED, str(only) if only else "-", f"{r['n']} conversations have "
                    f"an org_id that is {kind}{f' ({seen})' if seen else ''}, not an org's "
                    "ObjectId: billing skips them", r["n"], [str(i) for i in r["ids"]],
                    "report: the host must fix them", repairable=False))
        return out

    def usage_quantity(self, oid: ObjectId) -> list[Finding]:
        """Conversations line items whose quantity is not the number of conversations linked to
        them; a mismatch is confirmed on one snapshot (a chunk may commit between the reads)."""
        linked = self._linked(oid)
        items = [i for i in self._db()[schema.LINE_ITEMS].find(
            {"org_id": oid}, {"kind": 1, "quantity": 1, "invoice_id": 1}).to_list()
            if i.get("kind") == LineItemKind.CONVERSATIONS.value]
        out = []
        for item in items:
            if item.get("quantity") == linked.get(item["_id"], 0):
                continue
            confirmed = self._ctx.uow.run(partial(self._usage_of, oid=oid,
                                                        iid=item["_id"]))
            if confirmed is None:
                continue
            quantity, n, invoice_id = confirmed
            out.append(Finding(
                Check.USAGE_QUANTITY, str(oid), f"line item {item['_id']} of invoice "
                f"{invoice_id} bills {quantity} conversations but {n} are linked to it", 1,
                [str(item["_id"])], "report: a person must decide what was charged",
                repairable=False))
        return out

    def _usage_of(self, txn: Transaction, *, oid: ObjectId, iid: ObjectId
                        ) -> tuple[Any, int, Any] | None:
        item = txn.find_one(schema.LINE_ITEMS, {"_id": iid, "org_id": oid})
        n = txn.count(schema.CONVERSATIONS, {"org_id": oid, "line_item_id": iid})
        if item is None or item.get("quantity") == n:
            return None
        return item.get("quantity"), n, item.get("invoice_id")

    # ---- repairs (each its own transaction or bounded invoice run) ---------------------------

    def repair(self, finding: Finding) -> str:
        oid = ObjectId(finding.org_id)
        p = finding.params
        if finding.check is Check.DANGLING_LINK:
            return self._ctx.uow.run(lambda txn: self._release(txn, oid, p))
        if finding.check is Check.WRONG_TOTALS:
            return self._ctx.uow.run(lambda txn: self._retotal(txn, oid, p["invoice_id"]))
        if finding.check is Check.STALE_DRAFT:
            inv = self._invoices._bill(oid, p["period"], supplement=p["supplement"],
                                             finalize=True)
            return f"finalised invoice {inv.id} number {inv.number}"
        if finding.check is Check.UNBILLED:
            return self._bill_late(oid, p["period"])
        return "nothing to do"

    def _release(self, txn: Transaction, oid: ObjectId, p: Doc) -> str:
        item_id = p["line_item_id"]
        hold = {"org_id": oid, "line_item_id": item_id}
        span = txn.aggregate_one(schema.CONVERSATIONS, [
            {"$match": hold}, {"$group": {"_id": None, "n": {"$sum": 1},
                                          "first": {"$min": "$ended_at"},
                                          "last": {"$max": "$ended_at"}}}])
        n = span["n"] if span else 0
        writes: list[Write] = []
        if not p["orphan"] and span is not None:
            item = txn.find_one(schema.LINE_ITEMS, queries.line_items_in_any_org([item_id]))
            if item is not None and item["org_id"] == oid:
                return "already consistent"
            if item is not None:
                raise StateConflict(
                    f"{n} conversations of org {oid} point to line item {item_id} of org "
                    f"{item['org_id']}: a person must decide which org they belong to")
            candidates = []
            # period_start <= first as `$lt first + 1 ms` (BSON dates are milliseconds): SecantusDB
            # drops the boundary of `$lte` on a middle key of a compound index.
            for doc in txn.find(schema.INVOICES, {
                    "org_id": oid, "period_start": {"$lt": span["first"] + timedelta(
                        milliseconds=1)}, "period_end": {"$gt": span["last"]}}, limit=100,
                    hint="one_per_period"):
                invoice = read_invoice(txn, oid, doc["_id"])
                if invoice.item(LineItemKind.CONVERSATIONS) is None and invoice.conversations:
                    candidates.append(invoice)
            restored = [r for r in (restored_item(c, str(item_id), n) for c in candidates) if r]
            if len(restored) == 1:
                txn.write([insert(schema.LINE_ITEMS, documents.line_item_doc(restored[0]))])
                faults.hit("reconcile.release.after_write")
                return f"restored the line item on invoice {restored[0].invoice_id}"
            if candidates:
                raise StateConflict(
                    f"{n} conversations point to missing line item {item_id}, and invoice(s) "
                    f"{', '.join(c.id for c in candidates)} lack their conversations item but "
                    "cannot tell its amount: a person must decide what was charged")
        if n:
            writes.append(Write(schema.CONVERSATIONS, "update_many", hold,
                                {"$set": {"line_item_id": None}}, expect=n))
        if p["orphan"]:
            gone = {"_id": item_id, "org_id": oid}
            writes.append(Write(schema.LINE_ITEMS, "delete_one", gone, {},
                                expect=txn.count(schema.LINE_ITEMS, gone)))
        txn.write(writes)
        faults.hit("reconcile.release.after_write")
        return f"released {n} conversations" + (", deleted the line item" if p["orphan"] else "")

    def _retotal(self, txn: Transaction, oid: ObjectId, iid: ObjectId) -> str:
        invoice = read_invoice(txn, oid, iid)
        fixed = invoicing.with_items(invoice, invoice.line_items)
        if (fixed.subtotal, fixed.total) == (invoice.subtotal, invoice.total):
            return "already consistent"
        # A payment in flight was created for the stored total: changing it now would let that
        # payment take more (or less) than the invoice says. The next run, after it settles.
        latest = latest_payment(txn, oid, iid, invoice)
        if invoice.payment_lease is not None or (latest is not None and
                                                 latest.status in UNSETTLED):
            raise StateConflict(
                f"invoice {iid} has a payment in flight ({latest.id if latest else 'leased'}): "
                "its totals are recomputed once that payment has settled; run again later")
        txn.write(invoice_changes(invoice, fixed))
        faults.hit("reconcile.retotal.after_write")
        return f"totals set to {fixed.total}"

    def _bill_late(self, oid: ObjectId, period: Period) -> str:
        """Onto the month's draft (or a new invoice), else a supplementary invoice."""
        existing = self._db()[schema.INVOICES].find(
            {"org_id": oid, "period_start": period.start, "period_end": period.end},
            {"supplement": 1, "status": 1, "complete": 1}).sort("supplement", 1).to_list()
        draft = next((d for d in existing if d["status"] == "draft"), None)
        supplement = draft["supplement"] if draft else (
            existing[-1]["supplement"] + 1 if existing else 0)
        # A complete draft was kept open on purpose (create_for_period(finalize=False)): the late
        # conversations join it and it stays a draft for whoever is editing it.
        keep_open = draft is not None and draft["complete"]
        try:
            inv = self._invoices._bill(oid, period, supplement=supplement,
                                             finalize=not keep_open)
        except NothingToBill:
            return "nothing left to bill"
        kind = "supplementary invoice" if supplement else "invoice"
        number = "still a draft" if keep_open else f"number {inv.number}"
        return f"billed onto {kind} {inv.id} ({number})"


def _label(doc: Doc) -> str:
    return Period(doc["period_start"], doc["period_end"]).label
