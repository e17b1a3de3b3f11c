"""Plans for invoices, line items and conversations."""

from __future__ import annotations

from datetime import datetime, timedelta

from bson import ObjectId

from billing.adapters import documents, queries, schema
from billing.adapters.writes import Write, invoice_changes
from billing.domain import invoicing, money
from billing.domain.inputs import NewLineItem
from billing.domain.models import (
    Invoice,
    InvoiceStatus,
    LineItem,
    LineItemKind,
    Org,
    Payment,
    PaymentStatus,
    ResumeKey,
)
from billing.domain.periods import Period
from billing.domain.pricing import usage
from billing.errors import InvalidMoney, LineItemNotFound, NothingToBill, PaymentInProgress
from billing.plans import Doc, Plan, events, new_id, require_org


def _finalizing(org: Org, invoice: Invoice, now: datetime, retention: timedelta
                ) -> tuple[Invoice, list[Write]]:
    """Open the invoice with the org's next number; the org's counter moves in the same transaction
    and only from the value read, so numbers are gapless and never reused. Emits
    `invoice.finalized` in the same writes."""
    number = org.invoice_seq + 1
    org_write = Write(
        schema.ORGS, "update_one", {"_id": ObjectId(org.id), "invoice_seq": org.invoice_seq},
        {"$set": {"invoice_seq": number}},
    )
    opened = invoicing.finalize(invoice, number=number, now=now)
    box = events.Outbox(ObjectId(org.id), org.event_seq, now, retention)
    return opened, [org_write, *events.emit(box, [("invoice.finalized", event_data(opened))])]


def event_data(invoice: Invoice, **extra: object) -> dict[str, object]:
    """What an invoice event tells the host (ids, amounts, never a secret)."""
    return {"invoice_id": invoice.id, "number": invoice.number, "status": invoice.status.value,
            "total": invoice.total, "currency": invoice.currency,
            "period_start": invoice.period_start, "period_end": invoice.period_end, **extra}


def bill_chunk(
    snap: Doc | None, *, org_id: ObjectId, period: Period, supplement: int, limit: int,
    finalize: bool, now: datetime, retention: timedelta = events.DEFAULT_RETENTION,
) -> Plan[Invoice]:
    """One bounded step of billing a period: at most `limit` conversations, then complete and
    (if asked) finalise once none remain. Re-running after a commit resumes where it stopped.

    `snap["chunk"]` holds up to `limit + 1` conversations read in `snap["window"]` (the whole
    period if absent); `snap["malformed"]` counts the malformed ones in
    `snap["malformed_range"]` (the whole period if absent). A chunk that is not the last stores
    where it stopped (`resume_after`) and adds its malformed ones to the draft's count; the last
    counts those of the whole period again."""
    org = require_org(snap, org_id)
    assert snap is not None
    old = documents.invoice(snap["invoice"][0], snap["invoice"][0]["items"]) if snap["invoice"] \
        else None
    if old is not None and old.status is not InvoiceStatus.DRAFT:
        return Plan(old)  # already finalised: idempotent
    window: queries.Window = snap.get("window") or queries.Window.of(period, None)
    read = snap["chunk"]
    chunk, more = read[:limit], window.more_after(period, read, limit)
    # Pricing sees only what Python also finds well-formed; the rest count as malformed.
    priced = [c for c in chunk if queries.well_formed(c)]
    rejected = [c["_id"] for c in chunk if not queries.well_formed(c)]
    whole = snap.get("malformed_range", (period.start, period.end)) == (period.start, period.end)
    earlier = old.skipped_malformed if old is not None and not whole else 0
    malformed = earlier + (snap["malformed"][0]["n"] if snap["malformed"] else 0) + len(rejected)
    if old is None and not priced and not more:
        extra = f" ({malformed} malformed ones skipped)" if malformed else ""
        raise NothingToBill(
            f"org {org.id} has no unbilled conversations that ended in {period.label}{extra}"
        )
    new = old or invoicing.new_invoice(org, period, supplement=supplement, now=now, id=new_id())
    marks: list[Write] = []
    if priced:
        new = invoicing.add_usage(new, org, usage((c["started_at"], c["ended_at"]) for c in priced),
                                  new_id=new_id)
        item = new.item(LineItemKind.CONVERSATIONS)
        assert item is not None
        marks.append(Write(
            schema.CONVERSATIONS, "update_many",
            queries.chunk_marks(queries.unbilled_between(org_id, period, window.start, window.end),
                                chunk[-1], read[limit] if len(read) > limit else None,
                                snap["malformed"][0] if snap["malformed"] else None,
                                rejected=rejected, first=chunk[0], after=window.after),
            {"$set": {"line_item_id": ObjectId(item.id)}},
            expect=len(priced),
        ))
    new = new.model_copy(update={"skipped_malformed": malformed, "complete": not more,
                                 "keep_draft": not finalize,
                                 "resume_after": _resume_key(window, read, limit, period)})
    if not more and finalize:
        new, org_writes = _finalizing(org, new, now, retention)
        marks += org_writes
    if new == old:
        return Plan(new)
    return Plan(new.model_copy(update={"version": old.version + 1 if old else 0}),
                invoice_changes(old, new) + marks, done=not more)


def _resume_key(window: queries.Window, read: list[Doc], limit: int, period: Period
                ) -> ResumeKey | None:
    """Where the next chunk reads from, and how long a stretch of end times: about 1.25 times
    the stretch that held this chunk's `limit` conversations; an under-filled stretch grows by
    how far it fell short (16-fold at most, and 16-fold when it held none).

    The key is the chunk's last conversation when the next one read shares its end time;
    otherwise that end time with `queries.MAX_ID`, so the next stretch is a plain range from
    1 ms later. (A conversation recorded during the run at exactly that end time is then behind
    the key, as any recorded behind it is: left for `bill_late_usage`.)"""
    if len(read) > limit:
        last, following = read[limit - 1], read[limit]
        held = (last["ended_at"] - window.start) // queries.MS
        tied = following["ended_at"] == last["ended_at"]
        return ResumeKey(ended_at=last["ended_at"],
                         id=str(last["_id"] if tied else queries.MAX_ID),
                         span_ms=max(1, held + held // 4))
    if window.end < period.end:
        span = (window.end - window.start) // queries.MS
        grow = 16 if not read else min(16, max(1, -(-limit * 5 // (4 * len(read)))))
        return ResumeKey(ended_at=window.end - queries.MS, id=str(queries.MAX_ID),
                         span_ms=max(1, span * grow))
    return None


def more_chunks(snap: Doc, period: Period, limit: int) -> bool:
    """Whether the period's billing goes on after the chunk this snapshot read."""
    window: queries.Window = snap.get("window") or queries.Window.of(period, None)
    return window.more_after(period, snap["chunk"], limit)


def usage_bound(bound: Doc | None) -> Doc | None:
    """An upper bound of the period's usage from one cheap pass (`queries.usage_bound`): every
    unbilled conversation counted, each as long as the period's earliest start to its latest
    end. None when that pass cannot bound it (a start that is not a date sorts below every
    date, so `lo` is not one): the exact usage must be read instead. `bound` None: the pass
    found no unbilled conversation."""
    if bound is None:
        return {"n": 0, "minutes": 0}
    lo, hi = bound.get("lo"), bound.get("hi")
    if not isinstance(lo, datetime) or not isinstance(hi, datetime):
        return None
    longest = max(0, -(-((hi - lo) // timedelta(milliseconds=1)) // 60_000))
    return {"n": bound["n"], "minutes": bound["n"] * longest}


def fits(snap: Doc | None, used: Doc | None, *, org_id: ObjectId) -> bool:
    """Whether the period's invoice (its draft, if any, plus what `used` counts) stays within
    the largest storable amount."""
    return _projected(snap, used, org_id=org_id) <= money.MAX_AMOUNT


def _projected(snap: Doc | None, used: Doc | None, *, org_id: ObjectId) -> int:
    org = require_org(snap, org_id)
    assert snap is not None
    old = documents.invoice(snap["invoice"][0], snap["invoice"][0]["items"]) if snap["invoice"] \
        else None
    if used is None or (old is not None and old.status is not InvoiceStatus.DRAFT):
        return 0
    count, minutes = int(used["n"]), int(used["minutes"])
    total = old.subtotal if old is not None else 0
    for kind, added, price in ((LineItemKind.CONVERSATIONS, count, org.prices.per_conversation),
                               (LineItemKind.MINUTES, minutes, org.prices.per_started_minute)):
        item = old.item(kind) if old is not None else None
        if item is not None:  # the draft's frozen price
            total += item.unit_amount * added
        else:
            total += price * added
    return total


def require_fits(snap: Doc | None, used: Doc | None, *, org_id: ObjectId, period: Period,
                 supplement: int) -> None:
    """InvalidMoney when the period's invoice (its draft, if any, plus every unbilled
    conversation `used` counts exactly) would total more than MongoDB can store. Checked before
    a run of several chunks commits its first one: an overflow found in a later chunk would
    leave a draft that every retry fails on."""
    total = _projected(snap, used, org_id=org_id)
    if total <= money.MAX_AMOUNT:
        return
    assert snap is not None and used is not None
    org = require_org(snap, org_id)
    old = documents.invoice(snap["invoice"][0], snap["invoice"][0]["items"]) if snap["invoice"] \
        else None
    count, minutes = int(used["n"]), int(used["minutes"])
    what = "invoice" if supplement == 0 else f"supplementary invoice {supplement}"
    fix = (f"its draft {old.id} is unchanged and keeps its prices: check the conversations' "
           "times, or void the draft (the conversations on it are then written off)"
           if old is not None else
           "nothing was written: check the org's prices and the conversations' times")
    raise InvalidMoney(
        f"org {org.id}'s {what} for {period.label} would total {total}, more than the largest "
        f"storable amount {money.MAX_AMOUNT} ({count} unbilled conversations, {minutes} started "
        f"minutes); {fix}")


def finalize(snap: Doc | None, invoice: Invoice, *, now: datetime,
             retention: timedelta = events.DEFAULT_RETENTION) -> Plan[Invoice]:
    """Finalise a complete draft (an incomplete one is resumed by the caller first). One
    already finalised (numbered: open, paid, uncollectible, or void since) comes back as it
    is: a repeat after a lost answer."""
    if invoice.status is InvoiceStatus.OPEN or invoice.number is not None:
        return Plan(invoice)
    invoicing.require_draft(invoice)
    org = require_org(snap, ObjectId(invoice.org_id))
    new, org_writes = _finalizing(org, invoice, now, retention)
    return _changed(invoice, new, org_writes)


def void(invoice: Invoice, latest: Payment | None, *, now: datetime,
         box: events.Outbox | None = None) -> Plan[Invoice]:
    """Void an unpaid invoice. Its conversations stay linked to it: billed once, ever.

    Refused while money can still move: a payment attempt holds the invoice's lease, or the
    latest attempt has a Stripe intent that is not settled (the caller cancels that first)."""
    if invoice.status is InvoiceStatus.VOID:
        return Plan(invoice)
    lease = invoice.payment_lease
    if lease is not None and lease.expires_at > now:
        raise PaymentInProgress(
            f"invoice {invoice.id} is being paid (payment {lease.payment_id}): void it after "
            f"that attempt ends, at the latest {lease.expires_at.isoformat()}")
    if latest is not None and may_move_money(latest):
        raise PaymentInProgress(
            f"payment {latest.id} of invoice {invoice.id} ({latest.status.value}) can still "
            "take money: it is canceled in Stripe before voiding; retry the void",
            payment_id=latest.id)
    voided = invoicing.transition(invoice, InvoiceStatus.VOID)
    return _changed(invoice, voided, events.emit(box, [("invoice.voided", event_data(voided))]))


# Payment states in which a Stripe intent may still move money.
UNSETTLED = frozenset({PaymentStatus.PENDING, PaymentStatus.CONFIRMING,
                       PaymentStatus.PROCESSING, PaymentStatus.REQUIRES_ACTION})


def may_move_money(payment: Payment) -> bool:
    """Whether the attempt's intent may still take money: unsettled, or failed with an intent
    not canceled in Stripe (a declined or unauthenticated intent returns to
    `requires_payment_method`, where it can be confirmed again, by the customer on-session)."""
    return attempt_may_move_money(payment.status, payment.intent_id, payment.intent_canceled)


def attempt_may_move_money(status: PaymentStatus, intent_id: str | None,
                           intent_canceled: bool) -> bool:
    """`may_move_money` from an attempt's fields (a projection of its document will do)."""
    return status in UNSETTLED or (
        status is PaymentStatus.FAILED and intent_id is not None and not intent_canceled)


def add_line_item(invoice: Invoice, item: NewLineItem) -> Plan[LineItem]:
    line = LineItem(
        id=new_id(), org_id=invoice.org_id, invoice_id=invoice.id, kind=LineItemKind.MANUAL,
        description=item.description, quantity=item.quantity, unit_amount=item.unit_amount,
        amount=money.multiply(item.unit_amount, item.quantity),
        currency=item.currency or invoice.currency,
    )
    plan = _changed(invoice, invoicing.add_line_item(invoice, line))
    return Plan(line, plan.writes)


def remove_line_item(invoice: Invoice, line_item_id: ObjectId) -> Plan[Invoice]:
    item = next((li for li in invoice.line_items if li.id == str(line_item_id)), None)
    if item is None:
        raise LineItemNotFound(f"no line item {line_item_id} on invoice {invoice.id}")
    return _changed(invoice, invoicing.remove_line_item(invoice, item))


def _changed(old: Invoice, new: Invoice, extra: list[Write] | None = None) -> Plan[Invoice]:
    return Plan(new.model_copy(update={"version": old.version + 1}),
                invoice_changes(old, new) + (extra or []))


def resumable(invoice: Invoice) -> bool:
    """A draft whose conversations are not all collected yet (an interrupted bounded run)."""
    return invoice.status is InvoiceStatus.DRAFT and not invoice.complete
