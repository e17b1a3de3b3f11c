"""What each operation writes (billing.plans), decided from hand-built snapshots; no database."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.adapters import queries, schema
from billing.adapters.writes import Write
from billing.domain.inputs import NewLineItem
from billing.domain.models import (
    Invoice,
    InvoiceStatus,
    LineItemKind,
    Org,
    Payment,
    PaymentLease,
    PaymentStatus,
)
from billing.domain.periods import Period
from billing.domain.pricing import started_minutes
from billing.errors import (
    CurrencyMismatch,
    InvalidTransition,
    InvoiceNotEditable,
    InvoiceNotFound,
    LineItemNotFound,
    NothingToBill,
    OrgNotFound,
    PaymentInProgress,
    StateConflict,
)
from billing.plans import Plan, require_invoice
from billing.plans import invoices as invoice_plans
from billing.plans.conversations import conversation_plan
from tests.unit.factories import NOW, OCT, Doc, conversations, invoice, line_item, org, snapshot

S = InvoiceStatus
TENANT = {schema.INVOICES, schema.LINE_ITEMS, schema.CONVERSATIONS, schema.EVENTS}


def bill(snap: Doc | None, owner: Org, *, limit: int = 100, finalize: bool = True,
         period: Period = OCT) -> Plan[Invoice]:
    return invoice_plans.bill_chunk(snap, org_id=ObjectId(owner.id), period=period,
                                    supplement=0, limit=limit, finalize=finalize, now=NOW)


def of(writes: list[Write], collection: str, op: str | None = None) -> list[Write]:
    return [w for w in writes if w.collection == collection and (op is None or w.op == op)]


def assert_scoped(writes: list[Write], owner: Org) -> None:
    """Tenant writes carry the org's id; the only other write is to the org itself."""
    org_id = ObjectId(owner.id)
    for w in writes:
        if w.collection in TENANT:
            assert (w.doc if w.op == "insert" else w.filter)["org_id"] == org_id, w
        else:
            assert (w.collection, w.filter["_id"]) == (schema.ORGS, org_id), w


def committed(owner: Org, plan: Plan[Invoice]) -> Org:
    """The org as the next transaction reads it once `plan` committed."""
    for w in of(plan.writes, schema.ORGS):
        counter = "invoice_seq" if "invoice_seq" in w.filter else "event_seq"
        read = getattr(owner, counter)
        unset = {"$in": [None, 0]} if counter == "event_seq" else 0
        assert w.filter[counter] == (read if read else unset)
        owner = owner.model_copy(update=w.doc["$set"])
    return owner


def test_an_unknown_org_is_not_found() -> None:
    with pytest.raises(OrgNotFound):
        bill(None, org())


def test_nothing_to_bill_without_an_invoice_or_conversations() -> None:
    acme = org()
    with pytest.raises(NothingToBill, match="2026-10") as info:
        bill(snapshot(acme), acme)
    assert "malformed" not in info.value.message
    with pytest.raises(NothingToBill, match="3 malformed"):
        bill(snapshot(acme, malformed=3), acme)


def test_one_chunk_bills_finalises_and_numbers_a_new_invoice() -> None:
    acme = org(per_conversation=10, per_started_minute=3, invoice_seq=41)
    chunk = conversations(3, seconds=90)  # 2 started minutes each
    plan = bill(snapshot(acme, chunk=chunk, malformed=2), acme, limit=3)
    inv = plan.result
    assert plan.done
    assert (inv.status, inv.number, inv.complete, inv.finalized_at) == (S.OPEN, 42, True, NOW)
    assert (inv.conversations, inv.skipped_malformed, inv.total) == (3, 2, 3 * 10 + 6 * 3)
    assert inv.version == 0
    assert [(w.collection, w.op) for w in plan.writes] == [
        (schema.INVOICES, "insert"), (schema.LINE_ITEMS, "insert"), (schema.LINE_ITEMS, "insert"),
        (schema.CONVERSATIONS, "update_many"), (schema.ORGS, "update_one"),
        (schema.ORGS, "update_one"), (schema.EVENTS, "insert"),
    ]
    stored = of(plan.writes, schema.INVOICES)[0].doc
    assert (stored["status"], stored["number"], stored["total"]) == ("open", 42, inv.total)
    assert_scoped(plan.writes, acme)


def test_the_conversation_write_marks_exactly_the_chunk() -> None:
    acme = org()
    chunk = conversations(4)
    plan = bill(snapshot(acme, chunk=chunk), acme, limit=10)
    [mark] = of(plan.writes, schema.CONVERSATIONS)
    item = plan.result.item(LineItemKind.CONVERSATIONS)
    assert item is not None
    assert mark.op == "update_many" and mark.expect == len(chunk)
    assert mark.filter["org_id"] == ObjectId(acme.id)
    assert "line_item_id" in mark.filter and mark.filter["line_item_id"] is None
    # Nothing follows: every unbilled conversation that ended from the first one's end to the
    # last one's (none before the first: the chunk was read in index order).
    first, last = chunk[0], chunk[-1]
    assert mark.filter["ended_at"] == {
        "$gte": first["ended_at"], "$lt": last["ended_at"] + timedelta(milliseconds=1)}
    assert "$or" not in mark.filter and "$expr" not in mark.filter
    assert mark.doc == {"$set": {"line_item_id": ObjectId(item.id)}}


def test_a_full_chunk_with_more_waiting_stays_an_incomplete_draft() -> None:
    acme = org(invoice_seq=5)
    fetched = conversations(4)  # limit + 1, as the snapshot reads them
    plan = bill(snapshot(acme, chunk=fetched), acme, limit=3, finalize=True)
    inv = plan.result
    assert not plan.done
    assert (inv.status, inv.complete, inv.number, inv.conversations) == (S.DRAFT, False, None, 3)
    assert of(plan.writes, schema.ORGS) == []
    [mark] = of(plan.writes, schema.CONVERSATIONS)
    assert mark.expect == 3
    # The fourth ends later than the third: the chunk is a plain range up to the third's end.
    assert mark.filter["ended_at"]["$lt"] == fetched[2]["ended_at"] + timedelta(milliseconds=1)
    assert invoice_plans.resumable(inv)


def test_a_tie_across_the_chunk_end_marks_by_the_exact_key() -> None:
    acme = org()
    fetched = conversations(4)
    fetched[3]["ended_at"] = fetched[2]["ended_at"]  # the next one ends at the same time
    plan = bill(snapshot(acme, chunk=fetched), acme, limit=3)
    [mark] = of(plan.writes, schema.CONVERSATIONS)
    assert {"ended_at": fetched[2]["ended_at"], "_id": {"$lte": fetched[2]["_id"]}} in \
        mark.filter["$or"]
    assert "$expr" in mark.filter  # well-formed ones only, by the filter itself


def test_the_last_chunk_finalises_the_draft_with_a_guarded_counter() -> None:
    acme = org(invoice_seq=9)
    first = bill(snapshot(acme, chunk=conversations(3)), acme, limit=2)
    draft = first.result
    plan = bill(snapshot(acme, inv=draft, chunk=conversations(1)), acme, limit=2)
    inv = plan.result
    assert plan.done
    assert (inv.status, inv.number, inv.complete, inv.conversations) == (S.OPEN, 10, True, 3)
    assert inv.id == draft.id and inv.version == draft.version + 1
    counter, events_counter = of(plan.writes, schema.ORGS)
    assert events_counter.filter == {"_id": ObjectId(acme.id), "event_seq": {"$in": [None, 0]}}
    [finalized] = of(plan.writes, schema.EVENTS)
    assert finalized.doc["type"] == "invoice.finalized" and finalized.doc["seq"] == 1
    assert counter.op == "update_one" and counter.expect == 1
    assert counter.filter == {"_id": ObjectId(acme.id), "invoice_seq": 9}
    assert counter.doc == {"$set": {"invoice_seq": 10}}
    [update] = of(plan.writes, schema.INVOICES)
    assert update.filter == {"_id": ObjectId(draft.id), "org_id": ObjectId(acme.id),
                             "version": draft.version}
    assert update.doc["$set"]["version"] == draft.version + 1
    assert update.doc["$set"]["number"] == 10
    assert_scoped(plan.writes, acme)


def test_finalize_false_completes_without_numbering() -> None:
    acme = org(invoice_seq=3)
    plan = bill(snapshot(acme, chunk=conversations(2)), acme, finalize=False)
    assert (plan.result.status, plan.result.complete, plan.result.number) == (S.DRAFT, True, None)
    assert of(plan.writes, schema.ORGS) == []


@pytest.mark.parametrize("status", [S.OPEN, S.PAID, S.VOID, S.UNCOLLECTIBLE])
def test_an_invoice_past_draft_is_returned_as_is(status: InvoiceStatus) -> None:
    acme = org()
    done = invoice(acme, status=status, complete=True, version=4)
    plan = bill(snapshot(acme, inv=done, chunk=conversations(2), malformed=1), acme)
    assert plan.writes == [] and plan.done
    assert plan.result == done


def test_an_unchanged_complete_draft_writes_nothing() -> None:
    acme = org()
    draft = bill(snapshot(acme, chunk=conversations(2), malformed=1), acme, finalize=False).result
    plan = bill(snapshot(acme, inv=draft, malformed=1), acme, finalize=False)
    assert plan.writes == [] and plan.done
    assert plan.result == draft


def test_a_new_malformed_count_is_recorded() -> None:
    acme = org()
    draft = bill(snapshot(acme, chunk=conversations(2)), acme, finalize=False).result
    plan = bill(snapshot(acme, inv=draft, malformed=4), acme, finalize=False)
    assert plan.result.skipped_malformed == 4
    [update] = plan.writes
    assert update.doc["$set"]["skipped_malformed"] == 4


def test_a_draft_in_an_old_currency_is_not_billed_further() -> None:
    acme = org(currency="usd")
    draft = bill(snapshot(acme, chunk=conversations(2)), acme, finalize=False).result
    now_eur = org(id=acme.id, currency="eur")
    with pytest.raises(CurrencyMismatch):
        bill(snapshot(now_eur, inv=draft, chunk=conversations(1)), now_eur)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 25), limit=st.integers(1, 7), seq=st.integers(0, 1000),
       seconds=st.lists(st.integers(0, 600), min_size=25, max_size=25))
def test_billing_in_chunks_bills_every_conversation_once(
    n: int, limit: int, seq: int, seconds: list[int]
) -> None:
    """Runs bill_chunk as the service does, committing each plan into the next snapshot."""
    acme = org(per_conversation=7, per_started_minute=2, invoice_seq=seq)
    pending = conversations(n)
    for conv, s in zip(pending, seconds, strict=False):
        conv["ended_at"] = conv["started_at"] + timedelta(seconds=s)
    expected_minutes = sum(started_minutes(c["started_at"], c["ended_at"]) for c in pending)
    inv: Invoice | None = None
    steps = 0
    while True:
        steps += 1
        plan = bill(snapshot(acme, inv=inv, chunk=pending[:limit + 1]), acme, limit=limit)
        assert_scoped(plan.writes, acme)
        [mark] = of(plan.writes, schema.CONVERSATIONS)
        assert mark.expect == min(limit, len(pending))
        for update in of(plan.writes, schema.INVOICES, "update_one"):
            assert inv is not None and update.filter["version"] == inv.version
        pending = pending[mark.expect:]
        acme, inv = committed(acme, plan), plan.result
        if plan.done:
            break
        assert of(plan.writes, schema.ORGS) == [] and inv.status is S.DRAFT
    assert pending == []
    assert steps == -(-n // limit)
    assert (inv.status, inv.number, inv.complete, inv.conversations) == (S.OPEN, seq + 1, True, n)
    assert acme.invoice_seq == seq + 1
    minutes = inv.item(LineItemKind.MINUTES)
    assert minutes is not None and minutes.quantity == expected_minutes
    assert inv.total == 7 * n + 2 * expected_minutes
    # Running again after the last commit changes nothing.
    again = bill(snapshot(acme, inv=inv), acme, limit=limit)
    assert again.writes == [] and again.result == inv


def test_every_tenant_write_of_every_plan_is_scoped_to_the_org() -> None:
    acme = org(invoice_seq=2)
    first = bill(snapshot(acme, chunk=conversations(4), malformed=1), acme, limit=3)
    last = bill(snapshot(acme, inv=first.result, chunk=conversations(1)), acme, limit=3)
    draft = bill(snapshot(acme, chunk=conversations(2)), acme, finalize=False).result
    fee = invoice_plans.add_line_item(
        draft, NewLineItem.parse(description="Fee", quantity=1, unit_amount=5))
    with_fee = draft.model_copy(update={"line_items": (*draft.line_items, fee.result)})
    conv = conversations(1)[0]
    recorded = conversation_plan(
        snapshot(acme), None, org_id=ObjectId(acme.id), started_at=conv["started_at"],
        ended_at=conv["ended_at"], external_id="x", now=NOW, make_id=ObjectId)
    all_plans: list[Plan[Any]] = [
        first, last, fee, recorded,
        invoice_plans.finalize(snapshot(acme), draft, now=NOW),
        invoice_plans.void(draft, None, now=NOW),
        invoice_plans.remove_line_item(with_fee, ObjectId(fee.result.id)),
    ]
    writes = [w for plan in all_plans for w in plan.writes]
    assert {w.collection for w in writes} == TENANT | {schema.ORGS}
    assert {w.op for w in writes} == {"insert", "update_one", "update_many", "delete_one"}
    for w in writes:
        scoped = w.doc if w.op == "insert" else w.filter
        if w.collection in TENANT:
            assert isinstance(scoped["org_id"], ObjectId), w  # a str would match nothing
    assert_scoped(writes, acme)


def test_finalize_numbers_a_complete_draft() -> None:
    acme = org(invoice_seq=1)
    draft = bill(snapshot(acme, chunk=conversations(1)), acme, finalize=False).result
    plan = invoice_plans.finalize(snapshot(acme), draft, now=NOW)
    assert (plan.result.status, plan.result.number, plan.result.version) == (
        S.OPEN, 2, draft.version + 1)
    assert [(w.collection, w.op) for w in plan.writes] == [
        (schema.INVOICES, "update_one"), (schema.ORGS, "update_one"), (schema.ORGS, "update_one"),
        (schema.EVENTS, "insert")]
    assert of(plan.writes, schema.ORGS)[0].filter["invoice_seq"] == 1
    assert_scoped(plan.writes, acme)


def test_finalize_is_idempotent_and_refuses_closed_invoices() -> None:
    acme = org()
    opened = invoice(acme, status=S.OPEN, complete=True)
    assert invoice_plans.finalize(snapshot(acme), opened, now=NOW).writes == []
    for status in (S.PAID, S.VOID, S.UNCOLLECTIBLE):
        with pytest.raises(InvoiceNotEditable):  # never numbered: never finalised
            invoice_plans.finalize(snapshot(acme), invoice(acme, status=status), now=NOW)
        numbered = invoice(acme, status=status).model_copy(update={"number": 7})
        assert invoice_plans.finalize(snapshot(acme), numbered, now=NOW).result == numbered
    with pytest.raises(OrgNotFound):
        invoice_plans.finalize(None, invoice(acme, complete=True), now=NOW)


def test_void_is_idempotent_and_refuses_paid_invoices() -> None:
    acme = org()
    opened = invoice(acme, status=S.OPEN, complete=True, version=2)
    plan = invoice_plans.void(opened, None, now=NOW)
    assert plan.result.status is S.VOID and plan.result.version == 3
    [update] = plan.writes
    assert update.filter["version"] == 2 and update.doc["$set"]["status"] == "void"
    assert_scoped(plan.writes, acme)
    assert invoice_plans.void(plan.result, None, now=NOW).writes == []
    with pytest.raises(InvalidTransition):
        invoice_plans.void(invoice(acme, status=S.PAID), None, now=NOW)


def test_void_is_refused_while_money_can_still_move() -> None:
    acme = org()
    opened = invoice(acme, status=S.OPEN, complete=True)
    leased = opened.model_copy(update={"payment_lease": PaymentLease(
        payment_id=str(ObjectId()), expires_at=NOW + timedelta(seconds=30))})
    with pytest.raises(PaymentInProgress):
        invoice_plans.void(leased, None, now=NOW)
    expired = invoice_plans.void(leased, None, now=NOW + timedelta(seconds=31))
    assert expired.result.status is S.VOID

    def attempt(status: PaymentStatus, intent: str | None = "pi_1") -> Payment:
        return Payment(id=str(ObjectId()), org_id=acme.id, invoice_id=opened.id, attempt=1,
                       status=status, amount=100, currency="usd", idempotency_key="k",
                       intent_id=intent, created_at=NOW)

    # An attempt with no intent recorded may have one being created: it blocks too (the void
    # service abandons it first, so that intent can never be confirmed). So does a failed one
    # whose intent was not canceled in Stripe: it could be confirmed again.
    for blocking in (*(attempt(status) for status in PaymentStatus
                       if status not in (PaymentStatus.SUCCEEDED, PaymentStatus.CANCELED)),
                     attempt(PaymentStatus.PENDING, intent=None)):
        with pytest.raises(PaymentInProgress):
            invoice_plans.void(opened, blocking, now=NOW)
    closed = attempt(PaymentStatus.FAILED).model_copy(update={"intent_canceled": True})
    for settled in (closed, attempt(PaymentStatus.FAILED, intent=None),
                    attempt(PaymentStatus.CANCELED)):
        assert invoice_plans.void(opened, settled, now=NOW).result.status is S.VOID


def test_add_line_item_writes_the_item_and_the_new_totals() -> None:
    acme = org(currency="eur")
    draft = invoice(acme, version=1)
    item = NewLineItem.parse(description="Onboarding", quantity=2, unit_amount=1500)
    plan = invoice_plans.add_line_item(draft, item)
    line = plan.result
    assert (line.kind, line.amount, line.currency, line.invoice_id) == (
        LineItemKind.MANUAL, 3000, "eur", draft.id)
    [update] = of(plan.writes, schema.INVOICES)
    assert update.filter["version"] == 1 and update.doc["$set"]["total"] == 3000
    [insert] = of(plan.writes, schema.LINE_ITEMS)
    assert insert.op == "insert" and insert.doc["_id"] == ObjectId(line.id)
    assert_scoped(plan.writes, acme)


def test_add_line_item_refuses_another_currency_and_closed_invoices() -> None:
    acme = org(currency="eur")
    with pytest.raises(CurrencyMismatch):
        invoice_plans.add_line_item(invoice(acme), NewLineItem.parse(
            description="Fee", quantity=1, unit_amount=1, currency="usd"))
    with pytest.raises(InvoiceNotEditable):
        invoice_plans.add_line_item(invoice(acme, status=S.OPEN), NewLineItem.parse(
            description="Fee", quantity=1, unit_amount=1))


def test_remove_line_item_deletes_a_manual_line() -> None:
    acme = org()
    draft = invoice(acme)
    fee = line_item(draft, unit_amount=400)
    with_fee = invoice(acme, id=draft.id, items=(fee,))
    plan = invoice_plans.remove_line_item(with_fee, ObjectId(fee.id))
    assert plan.result.line_items == () and plan.result.total == 0
    [delete] = of(plan.writes, schema.LINE_ITEMS)
    assert delete.op == "delete_one" and delete.filter["_id"] == ObjectId(fee.id)
    assert_scoped(plan.writes, acme)
    with pytest.raises(LineItemNotFound):
        invoice_plans.remove_line_item(with_fee, ObjectId())


def test_remove_line_item_keeps_usage_lines() -> None:
    acme = org()
    draft = bill(snapshot(acme, chunk=conversations(1)), acme, finalize=False).result
    usage_line = draft.item(LineItemKind.MINUTES)
    assert usage_line is not None
    with pytest.raises(InvoiceNotEditable):
        invoice_plans.remove_line_item(draft, ObjectId(usage_line.id))


class Ids:
    """A fake id source: predictable ObjectIds, counting how many were made."""

    def __init__(self) -> None:
        self.made: list[ObjectId] = []

    def __call__(self) -> ObjectId:
        self.made.append(ObjectId())
        return self.made[-1]


def record(org_doc: Doc | None, existing: Doc | None, ids: Ids, *, org_id: ObjectId,
           started_at: datetime, ended_at: datetime, external_id: str | None) -> Plan[Doc]:
    return conversation_plan(org_doc, existing, org_id=org_id, started_at=started_at,
                                   ended_at=ended_at, external_id=external_id, now=NOW,
                                   make_id=ids)


def test_conversation_plan_inserts_an_unbilled_conversation_of_the_org() -> None:
    acme = org()
    conv = conversations(1)[0]
    ids = Ids()
    plan = record(snapshot(acme), None, ids, org_id=ObjectId(acme.id),
                  started_at=conv["started_at"], ended_at=conv["ended_at"], external_id="c-1")
    [insert] = plan.writes
    assert insert.doc == plan.result
    assert plan.result == {"_id": ids.made[0], "org_id": ObjectId(acme.id),
                           "started_at": conv["started_at"], "ended_at": conv["ended_at"],
                           "line_item_id": None, "recorded_at": NOW, "external_id": "c-1"}
    assert_scoped(plan.writes, acme)
    without = record(snapshot(acme), None, ids, org_id=ObjectId(acme.id),
                     started_at=conv["started_at"], ended_at=conv["ended_at"], external_id=None)
    assert "external_id" not in without.result


def test_conversation_plan_is_idempotent_per_external_id() -> None:
    acme = org()
    conv = conversations(2)
    existing = {**conv[0], "org_id": ObjectId(acme.id), "external_id": "c-1"}
    ids = Ids()
    same = record(snapshot(acme), existing, ids, org_id=ObjectId(acme.id),
                  started_at=conv[0]["started_at"], ended_at=conv[0]["ended_at"],
                  external_id="c-1")
    assert same.writes == [] and same.result is existing and ids.made == []
    with pytest.raises(StateConflict, match="other times"):
        record(snapshot(acme), existing, ids, org_id=ObjectId(acme.id),
               started_at=conv[1]["started_at"], ended_at=conv[1]["ended_at"], external_id="c-1")
    with pytest.raises(OrgNotFound):
        record(None, None, ids, org_id=ObjectId(acme.id), started_at=conv[0]["started_at"],
               ended_at=conv[0]["ended_at"], external_id=None)


def test_require_invoice_reports_a_missing_invoice() -> None:
    with pytest.raises(InvoiceNotFound):
        require_invoice(None, ObjectId(), ObjectId())


# ---- the overflow check's cheap bound ----------------------------------------------------------

spans = st.lists(st.tuples(st.integers(0, 40 * 86_400_000), st.integers(0, 3 * 86_400_000)),
                 min_size=1, max_size=30)


@given(spans)
def test_the_usage_bound_is_never_below_the_exact_usage(raw: list[tuple[int, int]]) -> None:
    base = datetime(2026, 10, 1)
    convs = [(base + timedelta(milliseconds=s), base + timedelta(milliseconds=s + d))
             for s, d in raw]
    bound = invoice_plans.usage_bound({"n": len(convs), "lo": min(s for s, _ in convs),
                                       "hi": max(e for _, e in convs)})
    assert bound is not None
    assert bound["n"] == len(convs)
    assert bound["minutes"] >= sum(started_minutes(s, e) for s, e in convs)


def test_a_usage_bound_is_refused_when_a_start_is_not_a_date() -> None:
    end = datetime(2026, 10, 2)
    assert invoice_plans.usage_bound({"n": 2, "lo": "2026-10-01", "hi": end}) is None
    assert invoice_plans.usage_bound({"n": 2, "lo": None, "hi": end}) is None
    assert invoice_plans.usage_bound(None) == {"n": 0, "minutes": 0}


def test_malformed_ones_within_a_range_are_kept_only_when_every_key_was() -> None:
    from billing.adapters import queries

    day = [datetime(2026, 10, d) for d in (1, 2, 3, 4)]
    keys = [{"i": n, "e": e} for n, e in enumerate(day)] + [{"i": 9, "e": [day[0], day[3]]}]
    found = [{"_id": None, "n": len(keys), "keys": keys}]
    within = queries.malformed_within(found, day[1], day[3])
    assert within is not None and within[0]["n"] == 3  # days 2 and 3, and the array of ends
    assert [k["i"] for k in within[0]["keys"]] == [1, 2, 9]
    assert queries.malformed_within([], day[0], day[3]) == []
    assert queries.malformed_within([{"n": 6, "keys": keys}], day[0], day[3]) is None


# A conversation as the pass reads it: well-formed, ending before it starts, or with a start that
# is not a date (a string, which sorts below every date).
kinds = st.sampled_from(["good", "good", "good", "reversed", "string"])


@given(st.lists(st.tuples(st.integers(0, 40 * 86_400_000), st.integers(0, 3 * 86_400_000),
                          kinds), max_size=30), st.integers(0, 30))
def test_a_bound_joined_from_the_head_and_the_rest_is_never_below_the_exact_usage(
    raw: list[tuple[int, int, str]], cut: int
) -> None:
    """The first pass bounds the head's conversations in Python and the engine groups the
    rest: the usage that bound allows is never below the exact usage of the well-formed ones,
    and a rest with a start that is not a date turns to the exact usage."""
    base = datetime(2026, 10, 1)
    docs = []
    for s, d, kind in raw:
        start, end = base + timedelta(milliseconds=s), base + timedelta(milliseconds=s + d)
        if kind == "reversed":
            start, end = end + timedelta(milliseconds=1), start
        docs.append({"_id": ObjectId(), "org_id": ObjectId(), "ended_at": end,
                     "started_at": "2026-10-01" if kind == "string" else start})
    docs.sort(key=lambda d: d["ended_at"])
    head, rest = docs[:cut], docs[cut:]
    strings = [d["started_at"] for d in rest if isinstance(d["started_at"], str)]
    group = [{"n": len(rest), "hi": max(d["ended_at"] for d in rest),
              "lo": min(strings) if strings else min(d["started_at"] for d in rest)}] if rest \
        else []

    bound = invoice_plans.usage_bound(queries.head_bound(
        [d for d in head if queries.conforms(d)], group))

    good = [d for d in docs if queries.conforms(d)]
    if bound is None:
        assert strings
        return
    assert bound["n"] >= len(good)
    assert bound["minutes"] >= sum(started_minutes(d["started_at"], d["ended_at"]) for d in good)
