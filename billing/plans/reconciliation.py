"""Reconciliation policies: findings and typed repairs decided from what detection read. Pure.

Policies (what `--apply` does for each kind):
- unbilled: conversations that ended before the last closed month boundary and are unbilled.
  Billed exactly once onto the month's invoice while it is a draft (or when none exists yet),
  otherwise onto a supplementary invoice for that month (supplement 1, 2, ...).
- dangling_link: a billed conversation whose line item is missing in every org, or a line item
  whose invoice is missing. A conversation linked to a line item of another org (its `org_id` was
  rewritten after billing, or is an array) is reported for a person, never released: releasing
  it would bill it twice. So are links whose conversations break the data contract (see
  malformed). A missing conversations line item is restored on its invoice when the invoice
  still records it (the period's invoice lacks its conversations item, counts exactly those
  conversations, and its stored subtotal misses a whole multiple of their count): they were
  charged there, so rebilling them would charge their minutes twice. With no invoice left for
  them the conversations are released (line_item_id back to null, conditional on the broken id)
  and billed again by the `unbilled` repair in the same run; when an invoice lacks its item but
  cannot tell the amount, the finding fails for a person to decide. An orphan line item (its
  invoice is gone) is deleted and its conversations released. Line items of void invoices are
  not findings: voiding writes their conversations off, by design (see the README).
- wrong_totals: an invoice whose subtotal or total differs from the sum of its line items.
  Recomputed from the line items unless the invoice is paid or void (money has moved or the
  invoice is closed): those are reported for a person.
- stale_draft: a draft whose billing was interrupted. Resumed and finalised.
- payment_method: Stripe is the truth for what is attached; the database for which org owns
  what. Pending attaches are finished when Stripe shows the method on the org's customer, or
  failed when it does not; unfinished detaches are detached; a method attached to the org's
  customer but unknown here is adopted (never detached: the org may use it); an active method
  that Stripe no longer has attached, or of an org without a customer, is marked detached; a
  default pointing at a missing or unusable method is cleared; a recorded customer that Stripe
  no longer has is forgotten (as customer.deleted does). The only detach in Stripe that
  reconciliation makes is of a method whose org no longer exists, and the only deletion is of
  an empty extra customer our metadata says billing created for the org; both findings say so.
- payment: payment attempts not settled after `stale_after` (a lost webhook, a process that died,
  a `processing` payment) are settled from Stripe's state, never charged again; webhooks whose
  amount, currency or customer disagreed with our attempt are reported for a person.
- usage_quantity: a conversations line item whose quantity differs from the number of the
  org's conversations linked to it (confirmed on one snapshot). Reported: money is a person's call.
- malformed: conversations billing cannot price (`started_at` or `ended_at` not one date, or
  ending before they start), and conversations that break the data contract's types
  (`line_item_id` neither null nor an ObjectId; `org_id` an array, a string, a number, null or
  missing). Billing skips them; reported, never changed.

A check that cannot finish for one org (bad data, a Stripe error) is recorded as a failed
finding of that org and the run goes on; only an unreachable database stops the run.

Detection reads (billing/_async/repositories) and hands the documents to the functions here;
each finding carries the repair `--apply` makes, one frozen dataclass per kind, which the
services apply in a transaction of its own (the repair-time decisions are here too).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from bson import ObjectId

from billing.adapters import documents, schema
from billing.adapters.writes import Write, insert, invoice_changes
from billing.domain import invoicing
from billing.domain.models import (
    Invoice,
    InvoiceStatus,
    LineItem,
    LineItemKind,
    Org,
    Payment,
    PaymentMethodStatus,
)
from billing.domain.payments import CardMethod
from billing.domain.periods import Period, next_month
from billing.errors import StateConflict
from billing.plans import Plan
from billing.plans.invoices import UNSETTLED
from billing.reconcile_findings import Check, Finding

Doc = dict[str, Any]
LIVE = ["pending", "active", "detaching"]  # payment method states that still hold a card


# ---- the repairs -------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReleaseLinks:
    """Conversations pointing to a missing line item: restore it, or release them."""

    kind: ClassVar[str] = "release"
    line_item_id: ObjectId


@dataclass(frozen=True)
class DeleteOrphanItem:
    """A line item whose invoice is gone: delete it and release its conversations."""

    kind: ClassVar[str] = "delete_orphan"
    line_item_id: ObjectId


@dataclass(frozen=True)
class Retotal:
    kind: ClassVar[str] = "retotal"
    invoice_id: ObjectId


@dataclass(frozen=True)
class ResumeDraft:
    kind: ClassVar[str] = "resume_draft"
    period: Period
    supplement: int


@dataclass(frozen=True)
class BillLate:
    kind: ClassVar[str] = "bill_late"
    period: Period


@dataclass(frozen=True)
class SettlePayment:
    kind: ClassVar[str] = "settle_payment"
    invoice_id: ObjectId
    payment_id: ObjectId


@dataclass(frozen=True)
class ClearDefault:
    kind: ClassVar[str] = "clear_default"
    method: str


@dataclass(frozen=True)
class ForgetCustomer:
    kind: ClassVar[str] = "customer_gone"
    customer: str


@dataclass(frozen=True)
class FinishDetach:
    kind: ClassVar[str] = "finish_detach"
    method: ObjectId


@dataclass(frozen=True)
class MarkGone:
    """Active here, no longer attached in Stripe (or the org has no customer)."""

    kind: ClassVar[str] = "gone"
    method: ObjectId


@dataclass(frozen=True)
class FinishAttach:
    kind: ClassVar[str] = "finish_attach"
    method: ObjectId


@dataclass(frozen=True)
class Adopt:
    kind: ClassVar[str] = "adopt"
    stripe_id: str


@dataclass(frozen=True)
class DeleteExtraCustomer:
    kind: ClassVar[str] = "extra_customer"
    customer: str


@dataclass(frozen=True)
class DetachOrphan:
    """A live method of an org that no longer exists: detached in Stripe, then here."""

    kind: ClassVar[str] = "orphan"
    method: ObjectId


BillingRepair = ReleaseLinks | DeleteOrphanItem | Retotal | ResumeDraft | BillLate
MethodRepair = (ClearDefault | ForgetCustomer | FinishDetach | MarkGone | FinishAttach | Adopt
                | DeleteExtraCustomer | DetachOrphan)
Repair = BillingRepair | MethodRepair | SettlePayment


# ---- billing links -----------------------------------------------------------------------------

def missing_items(linked: Mapping[ObjectId, int], items: Iterable[Doc]) -> list[ObjectId]:
    """The line items conversations point to that the org does not have."""
    known = {i["_id"] for i in items}
    return [item_id for item_id in linked if item_id not in known]


def dangling(oid: ObjectId, linked: Mapping[ObjectId, int], items: Sequence[Doc],
             elsewhere: Mapping[ObjectId, Any], broken: Mapping[ObjectId, int],
             invoice_ids: set[Any]) -> list[Finding]:
    """Findings of links to missing line items and of line items whose invoice is missing.

    `linked`: the org's billed conversations per line item; `items`: its line items
    (`_id`, `invoice_id`); `elsewhere`: missing items found in another org (id to org id);
    `broken`: malformed conversations per missing item; `invoice_ids`: the org's invoices."""
    out: list[Finding] = []
    for item_id in missing_items(linked, items):
        n = linked[item_id]
        if item_id in elsewhere:
            out.append(Finding(
                Check.DANGLING_LINK, str(oid), f"{n} conversations of org {oid} are billed on "
                f"line item {item_id} of org {elsewhere[item_id]}", n, [str(item_id)],
                "report: their org_id was changed after billing or is not one id; a person "
                "must decide which org they belong to (they stay billed)", repairable=False))
        elif broken.get(item_id):
            out.append(Finding(
                Check.DANGLING_LINK, str(oid), f"{n} conversations point to missing line "
                f"item {item_id}, {broken[item_id]} of them malformed", n, [str(item_id)],
                "report: the host must fix them before they can be released",
                repairable=False))
        else:
            out.append(Finding(
                Check.DANGLING_LINK, str(oid), f"{n} conversations point to missing line "
                f"item {item_id}", n, [str(item_id)],
                "restore the line item from its invoice, or release them to be billed again",
                repair=ReleaseLinks(item_id)))
    for item in items:
        if item["invoice_id"] not in invoice_ids:
            n = linked.get(item["_id"], 0)
            out.append(Finding(
                Check.DANGLING_LINK, str(oid), f"line item {item['_id']} belongs to missing "
                f"invoice {item['invoice_id']} ({n} conversations)", max(n, 1),
                [str(item["_id"])], "delete the line item; release its conversations",
                repair=DeleteOrphanItem(item["_id"])))
    return out


def restored_item(invoice: Invoice, item_id: str, linked: int) -> LineItem | None:
    """The conversations line item a broken writer deleted, rebuilt from what its invoice still
    records (conversation count, stored subtotal); None when the invoice cannot tell."""
    if (linked <= 0 or invoice.status is InvoiceStatus.VOID or invoice.conversations != linked
            or invoice.item(LineItemKind.CONVERSATIONS) is not None):
        return None
    missing = invoice.subtotal - sum(li.amount for li in invoice.line_items)
    if missing < 0 or missing % linked:
        return None
    return LineItem(id=item_id, org_id=invoice.org_id, invoice_id=invoice.id,
                    kind=LineItemKind.CONVERSATIONS, description="Conversations", quantity=linked,
                    unit_amount=missing // linked, amount=missing, currency=invoice.currency)


def owned_elsewhere(item: Doc | None, oid: ObjectId, item_id: ObjectId, n: int) -> bool:
    """Whether the missing item turned up in this org after all (nothing to do); a conflict for
    a person if it belongs to another org; False if it is still missing."""
    if item is None:
        return False
    if item["org_id"] == oid:
        return True
    raise StateConflict(
        f"{n} conversations of org {oid} point to line item {item_id} of org "
        f"{item['org_id']}: a person must decide which org they belong to")


def lacking_item(invoice: Invoice) -> bool:
    """An invoice that counts conversations but has no conversations line item."""
    return invoice.item(LineItemKind.CONVERSATIONS) is None and bool(invoice.conversations)


def restoration(candidates: Sequence[Invoice], item_id: ObjectId, n: int) -> LineItem | None:
    """The one line item to restore among invoices lacking theirs; None to release instead
    (no invoice records them); StateConflict when invoices lack it but cannot tell its amount."""
    restored = [r for r in (restored_item(c, str(item_id), n) for c in candidates) if r]
    if len(restored) == 1:
        return restored[0]
    if candidates:
        raise StateConflict(
            f"{n} conversations point to missing line item {item_id}, and invoice(s) "
            f"{', '.join(c.id for c in candidates)} lack their conversations item but "
            "cannot tell its amount: a person must decide what was charged")
    return None


def restore(item: LineItem) -> list[Write]:
    return [insert(schema.LINE_ITEMS, documents.line_item_doc(item))]


def release(oid: ObjectId, item_id: ObjectId, n: int, *, orphan_count: int | None = None
            ) -> list[Write]:
    """Links set back to null (exactly the `n` read); with `orphan_count`, the orphan line
    item deleted too (guarded by whether it was still there)."""
    hold = {"org_id": oid, "line_item_id": item_id}
    writes: list[Write] = []
    if n:
        writes.append(Write(schema.CONVERSATIONS, "update_many", hold,
                            {"$set": {"line_item_id": None}}, expect=n))
    if orphan_count is not None:
        writes.append(Write(schema.LINE_ITEMS, "delete_one", {"_id": item_id, "org_id": oid}, {},
                            expect=orphan_count))
    return writes


# ---- totals, drafts, late conversations --------------------------------------------------------

def wrong_totals(oid: ObjectId, invoices: Sequence[Doc], items: Iterable[Doc]) -> list[Finding]:
    """Invoices (`status`, `subtotal`, `total`) whose totals differ from the sum of their line
    items (`invoice_id`, `amount`); paid and void ones are only reported."""
    sums: dict[Any, int] = {}
    for item in items:
        sums[item["invoice_id"]] = sums.get(item["invoice_id"], 0) + item["amount"]
    out = []
    for r in invoices:
        total = sums.get(r["_id"], 0)
        if r["subtotal"] != total or r["total"] != total:
            closed = r["status"] in (InvoiceStatus.PAID.value, InvoiceStatus.VOID.value)
            out.append(Finding(
                Check.WRONG_TOTALS, str(oid), f"invoice {r['_id']} ({r['status']}) totals "
                f"{r['subtotal']}/{r['total']} but its line items sum to {total}", 1,
                [str(r["_id"])], "report: money has moved or the invoice is closed" if closed
                else "recompute totals from line items", repairable=not closed,
                repair=None if closed else Retotal(r["_id"])))
    return out


def totals_differ(invoice: Invoice) -> bool:
    fixed = invoicing.with_items(invoice, invoice.line_items)
    return (fixed.subtotal, fixed.total) != (invoice.subtotal, invoice.total)


def retotal(invoice: Invoice, latest: Payment | None) -> Plan[int]:
    """The invoice's totals set from its line items (the new total as result); StateConflict
    while a payment is in flight, created for the stored total: changing it now would let that
    payment take more (or less) than the invoice says. The next run, after it settles."""
    if invoice.payment_lease is not None or (latest is not None and latest.status in UNSETTLED):
        raise StateConflict(
            f"invoice {invoice.id} has a payment in flight "
            f"({latest.id if latest else 'leased'}): its totals are recomputed once that "
            "payment has settled; run again later")
    fixed = invoicing.with_items(invoice, invoice.line_items)
    return Plan(fixed.total, invoice_changes(invoice, fixed))


def stale_drafts(oid: ObjectId, drafts: Iterable[Doc], before: datetime) -> list[Finding]:
    """Incomplete drafts created before `before`: left part-billed by an interrupted run."""
    return [Finding(
        Check.STALE_DRAFT, str(oid), f"draft {d['_id']} for {_label(d)} was left "
        "part-billed by an interrupted run", 1, [str(d["_id"])], "resume and finalise",
        repair=ResumeDraft(Period(d["period_start"], d["period_end"]), d["supplement"]))
        for d in drafts if d["created_at"] < before]


def unbilled(oid: ObjectId, months: Iterable[Doc]) -> list[Finding]:
    """One finding per month of unbilled conversations (`_id` {y, m}, `n`, sample `ids`)."""
    out = []
    for r in months:
        start = datetime(r["_id"]["y"], r["_id"]["m"], 1, tzinfo=UTC)
        period = Period(start, next_month(start))
        noun = "conversation" if r["n"] == 1 else "conversations"
        out.append(Finding(
            Check.UNBILLED, str(oid), f"{r['n']} unbilled {noun} ended in {period.label}",
            r["n"], [str(i) for i in r["ids"]], "bill onto the month's draft, or a "
            "supplementary invoice if it is final", repair=BillLate(period)))
    return out


@dataclass(frozen=True)
class LateTarget:
    """Where a month's late conversations go: which invoice of the period, and whether it is
    left a draft."""

    supplement: int
    keep_open: bool


def late_target(existing: Sequence[Doc]) -> LateTarget:
    """From the period's invoices (`supplement`, `status`, `complete`, by supplement): its draft
    if it has one, else the period's invoice if there is none yet, else the next supplement. A
    complete draft was kept open on purpose (create_for_period(finalize=False)): the late
    conversations join it and it stays a draft for whoever is editing it."""
    draft = next((d for d in existing if d["status"] == "draft"), None)
    if draft is not None:
        return LateTarget(draft["supplement"], keep_open=bool(draft["complete"]))
    return LateTarget(existing[-1]["supplement"] + 1 if existing else 0, keep_open=False)


# ---- usage and malformed conversations ---------------------------------------------------------

def usage_suspects(linked: Mapping[ObjectId, int], items: Iterable[Doc]) -> list[Doc]:
    """Conversations line items whose quantity is not the number of conversations linked to
    them, in what detection read (a chunk may commit between its reads: to be confirmed)."""
    return [i for i in items if i.get("kind") == LineItemKind.CONVERSATIONS.value
            and i.get("quantity") != linked.get(i["_id"], 0)]


def usage_mismatch(oid: ObjectId, item: Doc | None, n: int) -> Finding | None:
    """The finding for a line item read with the count of its conversations on one snapshot."""
    if item is None or item.get("quantity") == n:
        return None
    return Finding(
        Check.USAGE_QUANTITY, str(oid), f"line item {item['_id']} of invoice "
        f"{item.get('invoice_id')} bills {item.get('quantity')} conversations but {n} are "
        "linked to it", 1, [str(item["_id"])], "report: a person must decide what was charged",
        repairable=False)


MALFORMED_TEXTS = {
    "times": "cannot be priced (started_at or ended_at not one date, or it ends before "
             "it starts)",
    "contract": "break the data contract (line_item_id neither null nor an ObjectId, "
                "or org_id not one ObjectId): billing skips them",
}


def malformed(oid: ObjectId, groups: Iterable[Doc]) -> list[Finding]:
    """Groups (`_id` "contract" or "times", `n`, sample `ids`) of the org's malformed
    conversations: reported, never changed."""
    return [Finding(Check.MALFORMED, str(oid),
                    f"{r['n']} conversations {MALFORMED_TEXTS[r['_id']]}", r["n"],
                    [str(i) for i in r["ids"]], "report: the host must fix them",
                    repairable=False) for r in groups]


def orgless(only: ObjectId | None, kind: str, group: Doc | None) -> list[Finding]:
    """Conversations whose `org_id` is `kind` (a string, a number, null): no org's scan sees
    them. `group`: `n`, sample `ids`, a few of the `orgs` values."""
    if group is None:
        return []
    seen = ", ".join(repr(o) for o in group["orgs"] if o is not None)
    return [Finding(
        Check.MALFORMED, str(only) if only else "-", f"{group['n']} conversations have "
        f"an org_id that is {kind}{f' ({seen})' if seen else ''}, not an org's "
        "ObjectId: billing skips them", group["n"], [str(i) for i in group["ids"]],
        "report: the host must fix them", repairable=False)]


# ---- payments ----------------------------------------------------------------------------------

def unsettled_payments(oid: ObjectId, docs: Iterable[Doc], stale_before: datetime, *,
                       can_ask: bool) -> list[Finding]:
    """Attempts unsettled since before `stale_before`; settled from Stripe when it `can_ask`."""
    return [Finding(
        Check.PAYMENT, str(oid), f"payment {d['_id']} (attempt {d['attempt']}) of invoice "
        f"{d['invoice_id']} is {d['status']} since {_since(d).isoformat()}", 1,
        [str(d["_id"])], "settle it from Stripe's state" if can_ask else
        "report: settling needs Stripe (set STRIPE_API_KEY)", repairable=can_ask,
        repair=SettlePayment(d["invoice_id"], d["_id"]) if can_ask else None)
        for d in docs if _since(d) < stale_before]


def mismatched_webhooks(oid: ObjectId, events: Iterable[Doc], since: datetime) -> list[Finding]:
    """Webhooks processed since `since` that disagreed with our attempt: for a person."""
    return [Finding(
        Check.PAYMENT, str(oid), f"webhook {e['_id']} disagreed with our records: "
        f"{e.get('detail', '')}", 1, [str(e["_id"])],
        "report: check the payment in Stripe's dashboard", repairable=False)
        for e in events if e["processed_at"] >= since]


def _since(doc: Doc) -> datetime:
    when: datetime = doc.get("updated_at") or doc["created_at"]
    return when


# ---- payment methods ---------------------------------------------------------------------------

def _method_finding(org_id: Any, summary: str, action: str, repair: MethodRepair,
                    target: Any) -> Finding:
    return Finding(Check.PAYMENT_METHOD, str(org_id), summary, 1, [str(target)], action,
                   repair=repair)


def stripe_id_of(doc: Doc) -> str | None:
    """The Stripe id of a method; a pending one may only know what it was asked to attach
    (`source`, which is the Stripe id when the host passed a `pm_...` id)."""
    value = doc.get("stripe_id") or doc.get("source")
    return value if isinstance(value, str) else None


def default_finding(org: Org, live: Sequence[Doc]) -> list[Finding]:
    """The org's default, when it points to a method that is missing or not active."""
    default = org.default_payment_method_id
    by_id = {str(d["_id"]): d for d in live}
    if default is None or by_id.get(default, {}).get("status") == "active":
        return []
    return [_method_finding(org.id, f"default points to {default}, which is missing or not "
                            "active", "clear the default", ClearDefault(default), default)]


def customer_gone(org: Org) -> Finding:
    """The org's recorded Stripe customer no longer exists in Stripe."""
    customer = org.stripe_customer_id or ""
    return _method_finding(
        org.id, f"the org's Stripe customer {customer} no longer exists in Stripe",
        "forget it here as customer.deleted does (its methods detached, the default cleared)",
        ForgetCustomer(customer), customer)


def method_findings(org: Org, live: Sequence[Doc], attached: Mapping[str, CardMethod] | None,
                    stale_before: datetime) -> list[Finding]:
    """The org's live methods (pending, active, detaching) held against what Stripe has
    attached to its customer (`attached`; None when Stripe was not asked)."""
    out: list[Finding] = []
    for d in live:
        if d["status"] == "detaching":
            out.append(_method_finding(org.id, f"detach of {d['_id']} was interrupted",
                                       "detach in Stripe, mark detached",
                                       FinishDetach(d["_id"]), d["_id"]))
        elif d["status"] == "active" and attached is not None \
                and d.get("stripe_id") not in attached:
            out.append(_method_finding(org.id, f"{d['_id']} is active here but not attached "
                                       "in Stripe", "mark detached here", MarkGone(d["_id"]),
                                       d["_id"]))
        elif d["status"] == "pending" and d["created_at"] < stale_before and (
                attached is not None or d.get("stripe_id") is None):
            on_customer = attached is not None and stripe_id_of(d) in attached
            out.append(_method_finding(
                org.id, f"attach {d['_id']} was interrupted", "activate (attached in Stripe)"
                if on_customer else "mark failed, or adopt what Stripe attached",
                FinishAttach(d["_id"]), d["_id"]))
    known = {stripe_id_of(d) for d in live}
    for stripe_id in sorted((attached or {}).keys() - known):
        out.append(_method_finding(org.id, f"{stripe_id} is attached to the org's Stripe "
                                   "customer but unknown here", "adopt it (never detach what "
                                   "the org may use)", Adopt(stripe_id), stripe_id))
    return out


def extra_customer(org: Org, customer_id: str, generation: Any, methods: int) -> Finding:
    """A Stripe customer our metadata says billing created for this org, not its current one:
    deleted when empty, left to a person when it has payment methods."""
    what = (f"Stripe customer {customer_id} was created by billing for this org (its "
            f"metadata says org {org.id}, generation {generation}) but is not "
            "the org's customer")
    if methods:
        return Finding(
            Check.PAYMENT_METHOD, org.id, f"{what}, and has {methods} payment "
            "methods attached", 1, [customer_id], "left for a person: detach its "
            "methods or delete it in Stripe", repairable=False)
    return _method_finding(org.id, f"{what} and has no payment methods",
                           "delete it in Stripe (irreversible; our metadata says billing "
                           "created it for this org)", DeleteExtraCustomer(customer_id),
                           customer_id)


def orphans(oid: ObjectId, live: Iterable[Doc]) -> list[Finding]:
    """Live methods of an org that no longer exists."""
    return [_method_finding(oid, f"{d['_id']} belongs to a deleted org", "detach in Stripe "
                            "(irreversible: no org owns it) and mark detached",
                            DetachOrphan(d["_id"]), d["_id"]) for d in live]


def detach_key(repair: FinishDetach | DetachOrphan, oid: ObjectId, method_id: Any) -> str:
    """The idempotency key of a detach in Stripe: an interrupted detach reuses the key
    detach() itself used."""
    if isinstance(repair, DetachOrphan):
        return f"reconcile-orphan:{method_id}"
    return f"pm-detach:{oid}:{method_id}"


def needs_stripe_detach(doc: Doc | None) -> bool:
    return doc is not None and doc["status"] in LIVE and bool(doc.get("stripe_id"))


def mark_detached(oid: ObjectId, method: Doc | None, org: Doc | None, now: datetime
                  ) -> list[Write] | None:
    """The method marked detached (guarded by the status read), and the org's default cleared
    if it pointed to it; None when the method is already settled."""
    if method is None or method["status"] not in LIVE:
        return None
    pid = method["_id"]
    writes = [Write(schema.PAYMENT_METHODS, "update_one",
                    {"_id": pid, "org_id": oid, "status": method["status"]},
                    {"$set": {"status": PaymentMethodStatus.DETACHED.value, "updated_at": now}})]
    if org is not None and org.get("default_payment_method_id") == str(pid):
        writes.append(Write(schema.ORGS, "update_one",
                            {"_id": oid, "default_payment_method_id": str(pid)},
                            {"$set": {"default_payment_method_id": None}}))
    return writes


def clear_default(org: Org, current: Doc | None) -> list[Write]:
    """The org's default cleared, unless it is (again) an active method: `current` is the
    method it points to now."""
    default = org.default_payment_method_id
    if default is None or (current is not None and current["status"] == "active"):
        return []
    return [Write(schema.ORGS, "update_one",
                  {"_id": ObjectId(org.id), "default_payment_method_id": default},
                  {"$set": {"default_payment_method_id": None}})]


def adoption(oid: ObjectId, card: CardMethod, now: datetime) -> Plan[Doc]:
    """A record for a card Stripe shows on the org's customer and we do not know: inserted
    pending (the result), for `payment_methods.activate` to activate in the same writes."""
    new_id = ObjectId()
    doc = {"_id": new_id, "org_id": oid, "request_id": f"adopted:{card.id}:{new_id}",
           "source": card.id, "status": "pending", "created_at": now, "updated_at": now}
    return Plan(doc, [insert(schema.PAYMENT_METHODS, doc)])


def _label(doc: Doc) -> str:
    return Period(doc["period_start"], doc["period_end"]).label
