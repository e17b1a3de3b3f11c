"""Case 4's data: orgs already billed for three closed months, written in bulk, plus a known set
of defects, and the findings a dry-run reconciliation must report for them.

Invoices and line items are built with billing's own pure rules (`invoicing.add_usage`,
`finalize`) from the conversations they cover, so everything not seeded as a defect is
consistent. The defects, each in a fixed share of the orgs (`KINDS`, at least one org each):
late conversations left unbilled (a third of the last closed month's, in one org of ten: about
1 % of all), a stale draft, wrong totals (open and paid), conversations pointing to a missing
line item, a line item of a missing invoice, malformed conversations, an interrupted detach, a
default pointing to a detached method, and methods of deleted orgs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo.database import Database

from bench import seed
from billing.adapters import documents
from billing.domain import invoicing
from billing.domain.models import Invoice, InvoiceStatus, LineItem, LineItemKind, Org, Prices
from billing.domain.periods import Period, next_month
from billing.domain.pricing import usage
from billing.plans import new_id
from billing.reconcile_findings import in_shard

Doc = dict[str, Any]
KINDS = {  # defect: (one org in `every`, offset)
    "late": (10, 0), "stale_draft": (50, 7), "wrong_total": (100, 3),
    "wrong_total_paid": (200, 53), "missing_item": (100, 5), "orphan_item": (100, 9),
    "malformed": (20, 11), "detaching": (100, 13), "bad_default": (100, 17),
}
FLUSH_ORGS = 200


@dataclass
class Expected:
    """Per org: findings by check, plus the conversations behind `unbilled` and `malformed`."""
    per_org: dict[ObjectId, Counter[str]] = field(default_factory=dict)
    conversations: dict[ObjectId, int] = field(default_factory=dict)  # existing orgs only
    orgs: list[ObjectId] = field(default_factory=list)

    def counts(self, shard: tuple[int, int] = (0, 1)) -> Counter[str]:
        total = Counter[str]()
        for oid, found in self.per_org.items():
            if in_shard(oid, shard):
                total.update(found)
        return total

    def conversations_in(self, shard: tuple[int, int]) -> int:
        return sum(n for oid, n in self.conversations.items() if in_shard(oid, shard))


def has(kind: str, i: int, orgs: int) -> bool:
    every, offset = KINDS[kind]
    step = min(every, orgs)
    return i % step == offset % step


def months_before(period: Period, count: int) -> list[Period]:
    """`count` calendar months ending with `period`, oldest first."""
    months = [period]
    while len(months) < count:
        start = (months[0].start - timedelta(days=1)).replace(day=1)
        months.insert(0, Period(start, months[0].start))
    return months


def seed_orgs(db: Database[Doc], n: int, orgs: int, period: Period, now: datetime,
              log: Callable[[str], None]) -> Expected:
    """`orgs` orgs sharing about n conversations (5 % in the open month); returns what a dry run
    must find. `db` must have billing's collections and indexes (`Billing.setup()`)."""
    expected, buffers = Expected(), _Buffers(db)
    months = months_before(period, 3)
    current = Period(period.end, next_month(period.end))
    per_org = n // orgs
    for i in range(orgs):
        oid = ObjectId()
        expected.orgs.append(oid)
        found = expected.per_org.setdefault(oid, Counter())
        convs = seed.conversations(oid, per_org // 20, current)  # still open: not findings
        closed = per_org - len(convs)
        seqs = 0
        for m, month in enumerate(months):
            docs = seed.conversations(oid, closed // 3 + (m < closed % 3), month)
            # Late arrivals in the last closed month (about 1 % of all conversations), and the
            # half of it an interrupted run left unbilled behind a stale draft.
            last = month is period
            late = {j for j in range(len(docs)) if last and (
                (has("late", i, orgs) and j % 3 == 0)
                or (has("stale_draft", i, orgs) and j % 2 == 1))}
            draft = last and has("stale_draft", i, orgs)
            inv = _invoice(oid, month, [d for j, d in enumerate(docs) if j not in late],
                           number=None if draft else seqs + 1, now=now)
            seqs += not draft
            if (m == 1 and has("wrong_total", i, orgs)) or (
                    m == 0 and has("wrong_total_paid", i, orgs)):
                if m == 0:
                    inv["status"] = InvoiceStatus.PAID.value
                inv["subtotal"] += 100
                inv["total"] += 100
                found["wrong_totals"] += 1
            buffers.invoices.append(inv)
            convs += docs
            if late:
                found["unbilled"] += 1
                found["unbilled conversations"] += len(late)
            found["stale_draft"] += draft
        _defects(buffers, convs, oid, i, orgs, months, found)
        buffers.orgs.append(_org(buffers, oid, i, orgs, seqs, now))
        found["payment_method"] += has("detaching", i, orgs) + has("bad_default", i, orgs)
        expected.conversations[oid] = len(convs)
        buffers.conversations += convs
        if (i + 1) % FLUSH_ORGS == 0:
            buffers.flush()
            log(f"case 4: seeded {i + 1:,} of {orgs:,} orgs")
    for _ in range(max(1, orgs // 100)):  # methods of orgs deleted since
        gone = ObjectId()
        buffers.methods.append(_method(gone, "active", now))
        expected.per_org[gone] = Counter(payment_method=1)
    buffers.flush()
    return expected


def _defects(buffers: _Buffers, convs: list[Doc], oid: ObjectId, i: int, orgs: int,
             months: list[Period], found: Counter[str]) -> None:
    if has("missing_item", i, orgs):  # three conversations billed onto a vanished line item
        gone = ObjectId()
        for doc in seed.conversations(oid, 3, months[0]):
            convs.append({**doc, "line_item_id": gone})
        found["dangling_link"] += 1
    if has("orphan_item", i, orgs):  # a manual line item whose invoice is gone
        buffers.items.append(documents.line_item_doc(LineItem(
            id=new_id(), org_id=str(oid), invoice_id=new_id(), kind=LineItemKind.MANUAL,
            description="Setup fee", quantity=1, unit_amount=500, amount=500, currency="usd")))
        found["dangling_link"] += 1
    if has("malformed", i, orgs):  # ends before it starts; an end that is not a date
        a, b = seed.conversations(oid, 2, months[1])
        convs.append({**a, "started_at": a["ended_at"] + timedelta(minutes=5)})
        convs.append({**b, "ended_at": b["ended_at"].isoformat()})
        found["malformed"] += 1
        found["malformed conversations"] += 2


def _invoice(oid: ObjectId, month: Period, billed: list[Doc], *, number: int | None,
             now: datetime) -> Doc:
    """The month's invoice over `billed` (linked to its conversations line item here)."""
    org = Org(id=str(oid), name="x", currency="usd", created_at=now, prices=Prices(
        per_conversation=seed.PER_CONVERSATION, per_started_minute=seed.PER_STARTED_MINUTE))
    inv: Invoice = invoicing.new_invoice(org, month, supplement=0, id=new_id(),
                                         now=now - timedelta(hours=2))
    inv = invoicing.add_usage(inv, org, usage((d["started_at"], d["ended_at"]) for d in billed),
                              new_id=new_id)
    if number is not None:
        inv = invoicing.finalize(inv, number=number, now=month.end)
        inv = inv.model_copy(update={"created_at": month.end})
    item = inv.item(LineItemKind.CONVERSATIONS)
    assert item is not None
    for d in billed:
        d["line_item_id"] = ObjectId(item.id)
    doc = documents.invoice_doc(inv)
    doc["_items"] = [documents.line_item_doc(li) for li in inv.line_items]
    return doc


def _org(buffers: _Buffers, oid: ObjectId, i: int, orgs: int, seqs: int, now: datetime) -> Doc:
    active = _method(oid, "active", now)
    buffers.methods.append(active)
    default = active["_id"]
    if has("bad_default", i, orgs):
        default = (detached := _method(oid, "detached", now))["_id"]
        buffers.methods.append(detached)
    if has("detaching", i, orgs):
        buffers.methods.append(_method(oid, "detaching", now))
    return documents.org_doc(Org(
        id=str(oid), name=f"Reconcile {i}", currency="usd", invoice_seq=seqs, created_at=now,
        stripe_customer_id=f"cus_{oid}",  # methods without a customer would be findings
        default_payment_method_id=str(default), prices=Prices(
            per_conversation=seed.PER_CONVERSATION, per_started_minute=seed.PER_STARTED_MINUTE)))


def _method(oid: ObjectId, status: str, now: datetime) -> Doc:
    pid = ObjectId()
    return {"_id": pid, "org_id": oid, "request_id": f"seed:{pid}", "status": status,
            "stripe_id": f"pm_{pid}", "customer_id": f"cus_{oid}", "brand": "visa",
            "last4": "4242",
            "created_at": now - timedelta(days=30), "updated_at": now - timedelta(days=30)}


class _Buffers:
    def __init__(self, db: Database[Doc]) -> None:
        self.db = db
        self.orgs: list[Doc] = []
        self.conversations: list[Doc] = []
        self.invoices: list[Doc] = []
        self.items: list[Doc] = []
        self.methods: list[Doc] = []

    def flush(self) -> None:
        for inv in self.invoices:
            self.items += inv.pop("_items")
        for name, docs in [("orgs", self.orgs), ("invoices", self.invoices),
                           ("line_items", self.items), ("payment_methods", self.methods),
                           ("conversations", self.conversations)]:
            seed.insert(self.db[name], docs)
            docs.clear()
