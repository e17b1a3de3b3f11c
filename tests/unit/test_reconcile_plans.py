"""Reconciliation's decisions without a server: what detection read in, findings and repairs out.

`Detected` is an in-memory stand-in for what the repositories return for one org (the
conversations' links, line items, invoices, methods), built from plain documents.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId

from billing.adapters import schema
from billing.domain.models import (
    InvoiceStatus,
    LineItemKind,
    Org,
    Payment,
    PaymentStatus,
)
from billing.domain.payments import CardMethod
from billing.domain.periods import Period
from billing.errors import StateConflict
from billing.plans import reconciliation as plan
from billing.reconcile_findings import Check
from tests.unit.factories import NOW, OCT, invoice, line_item, org

Doc = dict[str, Any]
SEP = Period(datetime(2026, 9, 1, tzinfo=UTC), datetime(2026, 10, 1, tzinfo=UTC))
STALE = NOW - timedelta(minutes=15)


@dataclass
class Detected:
    """One org's documents, answering the questions detection asks its repositories."""

    oid: ObjectId = field(default_factory=ObjectId)
    conversations: list[Doc] = field(default_factory=list)
    line_items: list[Doc] = field(default_factory=list)
    invoices: list[Doc] = field(default_factory=list)
    other_orgs_items: dict[ObjectId, ObjectId] = field(default_factory=dict)

    def billed(self, n: int, item_id: ObjectId, *, malformed: int = 0) -> None:
        for i in range(n):
            end = OCT.start + timedelta(hours=i)
            self.conversations.append({
                "_id": ObjectId(), "org_id": self.oid, "line_item_id": item_id,
                "started_at": end if i >= malformed else "yesterday", "ended_at": end})

    def item(self, invoice_id: ObjectId, **fields: Any) -> ObjectId:
        doc = {"_id": ObjectId(), "org_id": self.oid, "invoice_id": invoice_id, **fields}
        self.line_items.append(doc)
        return doc["_id"]

    def invoice(self, **fields: Any) -> ObjectId:
        doc = {"_id": ObjectId(), "org_id": self.oid, "status": "open", "subtotal": 0,
               "total": 0, **fields}
        self.invoices.append(doc)
        return doc["_id"]

    # what the repositories answer
    def links(self) -> dict[ObjectId, int]:
        out: dict[ObjectId, int] = {}
        for c in self.conversations:
            if isinstance(c["line_item_id"], ObjectId):
                out[c["line_item_id"]] = out.get(c["line_item_id"], 0) + 1
        return out

    def malformed_on(self, item_id: ObjectId) -> int:
        return sum(1 for c in self.conversations if c["line_item_id"] == item_id
                   and not isinstance(c["started_at"], datetime))

    def dangling(self) -> list[Any]:
        linked = self.links()
        missing = plan.missing_items(linked, self.line_items)
        elsewhere = {i: self.other_orgs_items[i] for i in missing if i in self.other_orgs_items}
        broken = {i: self.malformed_on(i) for i in missing if i not in elsewhere}
        return plan.dangling(self.oid, linked, self.line_items, elsewhere, broken,
                             {d["_id"] for d in self.invoices})


# ---- billing links -----------------------------------------------------------------------------

def test_links_to_a_missing_line_item_are_released_or_restored() -> None:
    org_data = Detected()
    lost = ObjectId()
    org_data.billed(3, lost)

    [finding] = org_data.dangling()

    assert (finding.check, finding.count, finding.repairable) == (Check.DANGLING_LINK, 3, True)
    assert finding.repair == plan.ReleaseLinks(lost) and finding.repair_kind == "release"


def test_links_to_another_orgs_line_item_are_only_reported_they_stay_billed() -> None:
    org_data = Detected()
    theirs, other_org = ObjectId(), ObjectId()
    org_data.billed(2, theirs)
    org_data.other_orgs_items[theirs] = other_org

    [finding] = org_data.dangling()

    assert not finding.repairable and finding.repair is None
    assert str(other_org) in finding.summary and "a person" in finding.action


def test_links_with_malformed_conversations_wait_for_the_host() -> None:
    org_data = Detected()
    lost = ObjectId()
    org_data.billed(4, lost, malformed=1)

    [finding] = org_data.dangling()

    assert not finding.repairable and "1 of them malformed" in finding.summary


def test_a_line_item_of_a_missing_invoice_is_deleted_and_its_conversations_released() -> None:
    org_data = Detected()
    kept = org_data.invoice()
    org_data.item(kept, amount=100)
    orphan = org_data.item(ObjectId(), amount=50)
    org_data.billed(2, orphan)

    [finding] = org_data.dangling()

    assert finding.repair == plan.DeleteOrphanItem(orphan) and finding.count == 2


def test_a_consistent_org_has_no_dangling_findings() -> None:
    org_data = Detected()
    inv = org_data.invoice()
    org_data.billed(5, org_data.item(inv, amount=250))
    assert org_data.dangling() == []


def _missing_item_invoice(n: int, unit: int, *, subtotal_extra: int = 0) -> Any:
    owner = org()
    inv = invoice(owner, status=InvoiceStatus.OPEN, complete=True, conversations=n)
    minutes = line_item(inv, kind=LineItemKind.MINUTES, quantity=2 * n, unit_amount=10)
    inv = invoice(owner, status=InvoiceStatus.OPEN, complete=True, conversations=n,
                  items=(minutes,), id=inv.id)
    return inv.model_copy(update={"subtotal": minutes.amount + n * unit + subtotal_extra})


def test_a_missing_conversations_item_is_restored_from_what_its_invoice_records() -> None:
    inv = _missing_item_invoice(3, 50)
    item_id = ObjectId()

    restored = plan.restoration([inv], item_id, 3)

    assert restored is not None
    assert (restored.id, restored.quantity, restored.unit_amount, restored.amount) == (
        str(item_id), 3, 50, 150)
    assert restored.kind is LineItemKind.CONVERSATIONS
    [write] = plan.restore(restored)
    assert (write.collection, write.op) == (schema.LINE_ITEMS, "insert")


def test_an_invoice_that_cannot_tell_the_amount_leaves_the_links_to_a_person() -> None:
    inv = _missing_item_invoice(3, 50, subtotal_extra=1)  # not a whole multiple of 3
    with pytest.raises(StateConflict, match="a person must decide"):
        plan.restoration([inv], ObjectId(), 3)
    assert plan.restoration([], ObjectId(), 3) is None  # no invoice: released instead


def test_release_matches_exactly_the_links_read() -> None:
    oid, item_id = ObjectId(), ObjectId()

    links, delete = plan.release(oid, item_id, 4, orphan_count=1)

    assert (links.collection, links.op, links.expect) == (schema.CONVERSATIONS, "update_many", 4)
    assert links.filter == {"org_id": oid, "line_item_id": item_id}
    assert (delete.collection, delete.op, delete.expect) == (schema.LINE_ITEMS, "delete_one", 1)
    assert plan.release(oid, item_id, 0) == []


def test_an_item_found_in_another_org_at_repair_time_is_a_conflict() -> None:
    oid, item_id = ObjectId(), ObjectId()
    assert plan.owned_elsewhere(None, oid, item_id, 2) is False
    assert plan.owned_elsewhere({"org_id": oid}, oid, item_id, 2) is True
    with pytest.raises(StateConflict):
        plan.owned_elsewhere({"org_id": ObjectId()}, oid, item_id, 2)


# ---- totals, drafts, late conversations --------------------------------------------------------

def test_wrong_totals_are_recomputed_unless_money_moved_or_the_invoice_is_closed() -> None:
    org_data = Detected()
    open_id = org_data.invoice(subtotal=100, total=100)
    paid_id = org_data.invoice(status="paid", subtotal=100, total=100)
    fine_id = org_data.invoice(subtotal=70, total=70)
    for inv_id, amount in ((open_id, 90), (paid_id, 90), (fine_id, 70)):
        org_data.item(inv_id, amount=amount)

    found = plan.wrong_totals(org_data.oid, org_data.invoices, org_data.line_items)

    assert [(f.ids, f.repair) for f in found] == [
        ([str(open_id)], plan.Retotal(open_id)), ([str(paid_id)], None)]
    assert [f.repairable for f in found] == [True, False]


def test_retotal_waits_for_a_payment_in_flight() -> None:
    owner = org()
    inv = invoice(owner, status=InvoiceStatus.OPEN, complete=True, items=())
    inv = invoice(owner, status=InvoiceStatus.OPEN, complete=True, id=inv.id,
                  items=(line_item(inv, unit_amount=700),)).model_copy(
        update={"subtotal": 500, "total": 500})
    assert plan.totals_differ(inv)
    paying = Payment(id=str(ObjectId()), org_id=owner.id, invoice_id=inv.id, attempt=1,
                     status=PaymentStatus.PROCESSING, amount=500, currency="usd",
                     idempotency_key="k", created_at=NOW)

    with pytest.raises(StateConflict, match="in flight"):
        plan.retotal(inv, paying)
    fixed = plan.retotal(inv, paying.model_copy(update={"status": PaymentStatus.FAILED}))
    assert fixed.result == 700 and fixed.writes


def test_only_drafts_older_than_stale_after_are_resumed() -> None:
    oid = ObjectId()
    old = {"_id": ObjectId(), "period_start": OCT.start, "period_end": OCT.end,
           "supplement": 1, "created_at": STALE - timedelta(seconds=1)}
    fresh = {**old, "_id": ObjectId(), "created_at": STALE}

    [finding] = plan.stale_drafts(oid, [old, fresh], STALE)

    assert finding.repair == plan.ResumeDraft(OCT, 1) and finding.ids == [str(old["_id"])]


def test_unbilled_conversations_are_billed_month_by_month() -> None:
    ids = [ObjectId(), ObjectId()]
    found = plan.unbilled(ObjectId(), [{"_id": {"y": 2026, "m": 9}, "n": 1, "ids": ids[:1]},
                                       {"_id": {"y": 2026, "m": 10}, "n": 2, "ids": ids}])
    assert [(f.count, f.repair) for f in found] == [(1, plan.BillLate(SEP)),
                                                    (2, plan.BillLate(OCT))]
    assert found[0].summary == "1 unbilled conversation ended in 2026-09"


@pytest.mark.parametrize(("existing", "target"), [
    ([], plan.LateTarget(0, keep_open=False)),  # never invoiced: the period's invoice
    ([("open", True, 0)], plan.LateTarget(1, keep_open=False)),  # final: a supplement
    ([("paid", True, 0), ("open", True, 1)], plan.LateTarget(2, keep_open=False)),
    ([("draft", False, 0)], plan.LateTarget(0, keep_open=False)),  # interrupted: finish it
    ([("draft", True, 0)], plan.LateTarget(0, keep_open=True)),  # kept open: stays a draft
    ([("void", True, 0), ("draft", False, 1)], plan.LateTarget(1, keep_open=False)),
])
def test_late_conversations_go_onto_the_draft_or_else_the_next_supplement(
    existing: list[tuple[str, bool, int]], target: plan.LateTarget
) -> None:
    docs = [{"status": s, "complete": c, "supplement": n} for s, c, n in existing]
    assert plan.late_target(docs) == target


def test_a_usage_mismatch_is_a_suspect_until_confirmed_on_one_snapshot() -> None:
    oid, inv = ObjectId(), ObjectId()
    right = {"_id": ObjectId(), "kind": "conversations", "quantity": 2, "invoice_id": inv}
    wrong = {"_id": ObjectId(), "kind": "conversations", "quantity": 5, "invoice_id": inv}
    manual = {"_id": ObjectId(), "kind": "manual", "quantity": 1, "invoice_id": inv}

    suspects = plan.usage_suspects({right["_id"]: 2, wrong["_id"]: 4}, [right, wrong, manual])

    assert suspects == [wrong]
    assert plan.usage_mismatch(oid, wrong, 5, "open") is None  # a chunk committed in between
    finding = plan.usage_mismatch(oid, wrong, 4, "open")
    assert finding is not None and not finding.repairable and "bills 5" in finding.summary
    assert "credit note" in finding.action


@pytest.mark.parametrize("status", ["draft", "void"])
def test_a_usage_mismatch_advises_a_credit_note_only_where_one_can_be_issued(status: str
                                                                               ) -> None:
    """Voiding writes an invoice's conversations off by design: no finding. A draft refuses
    credit notes: the finding does not advise one."""
    oid = ObjectId()
    wrong = {"_id": ObjectId(), "kind": "conversations", "quantity": 5,
             "invoice_id": ObjectId()}
    finding = plan.usage_mismatch(oid, wrong, 4, status)
    if status == "void":
        assert finding is None
    else:
        assert finding is not None and "credit" not in finding.action


def test_malformed_and_orgless_conversations_are_only_reported() -> None:
    ids = [ObjectId()]
    found = plan.malformed(ObjectId(), [{"_id": "contract", "n": 1, "ids": ids},
                                        {"_id": "times", "n": 1, "ids": ids}])
    found += plan.orgless(None, "a string", {"n": 1, "ids": ids, "orgs": ["abc"]})
    assert plan.orgless(None, "a number", None) == []
    assert [f.repairable for f in found] == [False, False, False]
    assert found[2].org_id == "-" and "'abc'" in found[2].summary


# ---- payments ----------------------------------------------------------------------------------

def test_stale_attempts_are_settled_only_with_stripe_to_ask() -> None:
    oid = ObjectId()
    stale = {"_id": ObjectId(), "invoice_id": ObjectId(), "attempt": 1, "status": "processing",
             "created_at": STALE - timedelta(hours=1), "updated_at": None}
    recent = {**stale, "_id": ObjectId(), "updated_at": STALE + timedelta(seconds=1)}

    [asked] = plan.unsettled_payments(oid, [stale, recent], STALE, can_ask=True)
    [blind] = plan.unsettled_payments(oid, [stale, recent], STALE, can_ask=False)

    assert asked.repair == plan.SettlePayment(stale["invoice_id"], stale["_id"])
    assert (blind.repairable, blind.repair) == (False, None)


def test_disagreeing_webhooks_are_reported_for_a_week() -> None:
    since = NOW - timedelta(days=7)
    events = [{"_id": "evt_new", "detail": "amount", "processed_at": since},
              {"_id": "evt_old", "detail": "amount", "processed_at": since - timedelta(1)}]
    assert [f.ids for f in plan.mismatched_webhooks(ObjectId(), events, since)] == [["evt_new"]]


# ---- payment methods ---------------------------------------------------------------------------

def _method(oid: ObjectId, status: str, stripe_id: str | None, **fields: Any) -> Doc:
    return {"_id": ObjectId(), "org_id": oid, "status": status, "stripe_id": stripe_id,
            "created_at": STALE - timedelta(hours=1), **fields}


def _org_with(customer: str | None, default: str | None = None) -> Org:
    return org().model_copy(update={"stripe_customer_id": customer,
                                    "default_payment_method_id": default})


def test_stripe_is_the_truth_for_what_is_attached() -> None:
    owner = _org_with("cus_1")
    oid = ObjectId(owner.id)
    detaching = _method(oid, "detaching", "pm_a")
    gone = _method(oid, "active", "pm_gone")
    kept = _method(oid, "active", "pm_kept")
    pending = _method(oid, "pending", None, source="pm_new")
    attached = {m: CardMethod(m, "cus_1") for m in ("pm_kept", "pm_new", "pm_stray")}

    found = plan.method_findings(owner, [detaching, gone, kept, pending], attached, STALE)

    assert [f.repair for f in found] == [
        plan.FinishDetach(detaching["_id"]), plan.MarkGone(gone["_id"]),
        plan.FinishAttach(pending["_id"]), plan.Adopt("pm_stray")]
    assert found[2].action == "activate (attached in Stripe)"
    assert [f.repair_kind for f in found] == ["finish_detach", "gone", "finish_attach", "adopt"]


def test_without_stripe_only_what_the_database_tells_is_decided() -> None:
    owner = _org_with("cus_1")
    oid = ObjectId(owner.id)
    active, pending = _method(oid, "active", "pm_a"), _method(oid, "pending", "pm_b")
    # The stale attach is found, but finishing it needs Stripe: without a gateway, reported.
    [found] = plan.method_findings(owner, [active, pending], None, STALE)
    assert found.repair == plan.FinishAttach(pending["_id"])
    [reported] = plan.without_stripe([found])
    assert reported.repair is None and not reported.repairable
    # An org with no customer has nothing usable attached: its active methods are gone.
    bare = _org_with(None)
    [finding] = plan.method_findings(bare, [active], {}, STALE)
    assert finding.repair == plan.MarkGone(active["_id"])


def test_a_default_that_is_not_an_active_method_is_cleared() -> None:
    owner = _org_with("cus_1")
    oid = ObjectId(owner.id)
    active, detaching = _method(oid, "active", "pm_a"), _method(oid, "detaching", "pm_b")
    assert plan.default_finding(owner.model_copy(update={
        "default_payment_method_id": str(active["_id"])}), [active]) == []
    [finding] = plan.default_finding(owner.model_copy(update={
        "default_payment_method_id": str(detaching["_id"])}), [active, detaching])
    assert finding.repair == plan.ClearDefault(str(detaching["_id"]))

    [write] = plan.clear_default(owner.model_copy(update={
        "default_payment_method_id": str(detaching["_id"])}), detaching)
    assert write.doc == {"$set": {"default_payment_method_id": None}}
    assert plan.clear_default(owner.model_copy(update={
        "default_payment_method_id": str(active["_id"])}), active) == []


def test_marking_detached_clears_the_default_that_points_to_it() -> None:
    oid = ObjectId()
    method = _method(oid, "active", "pm_a")
    org_doc = {"_id": oid, "default_payment_method_id": str(method["_id"])}

    writes = plan.mark_detached(oid, method, org_doc, NOW, by="stripe")

    assert writes is not None and [w.collection for w in writes] == [
        schema.PAYMENT_METHODS, schema.ORGS]
    assert writes[0].filter["status"] == "active"  # guarded by the state read
    assert plan.mark_detached(oid, {**method, "status": "detached"}, org_doc, NOW,
                              by="stripe") is None
    assert len(plan.mark_detached(oid, method, {"_id": oid}, NOW, by="stripe") or []) == 1


def test_only_an_orphan_or_an_empty_extra_customer_is_touched_in_stripe() -> None:
    owner = _org_with("cus_1")
    oid = ObjectId(owner.id)
    method = _method(oid, "active", "pm_a")
    [orphan] = plan.orphans(oid, [method])
    assert orphan.repair == plan.DetachOrphan(method["_id"]) and "irreversible" in orphan.action
    assert plan.detach_key(plan.DetachOrphan(method["_id"]), oid, method["_id"]) == \
        f"reconcile-orphan:{method['_id']}"
    assert plan.detach_key(plan.FinishDetach(method["_id"]), oid, method["_id"]) == \
        f"pm-detach:{oid}:{method['_id']}"

    empty = plan.extra_customer(owner, "cus_2", 0, methods=0)
    used = plan.extra_customer(owner, "cus_3", 0, methods=2)
    assert empty.repair == plan.DeleteExtraCustomer("cus_2") and "irreversible" in empty.action
    assert (used.repairable, used.repair) == (False, None)


def test_an_adopted_card_is_inserted_pending_for_activation() -> None:
    oid = ObjectId()
    adopted = plan.adoption(oid, CardMethod("pm_x", "cus_1"), NOW)
    assert adopted.result["status"] == "pending" and adopted.result["source"] == "pm_x"
    assert [w.collection for w in adopted.writes] == [schema.PAYMENT_METHODS]
