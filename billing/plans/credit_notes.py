"""Plans for credit notes: correcting a finalised invoice without editing it. Pure.

A credit note never changes an invoice's line items or total: it raises the invoice's
`amount_credited`, which lowers the amount still due (an unpaid invoice; fully credited, it is
paid without a charge, as Stripe marks it) or is given back (a paid invoice: refunded through
Stripe, or settled outside it). Every credit note of an invoice rewrites the invoice guarded by
its version, so concurrent ones serialise and the credited total can never exceed the total.
Numbers are per org and gapless: the org's `credit_note_seq` moves in the same transaction,
guarded by the value read.

A refund is bracketed like a payment: the transaction that stores the credit note records the
refund `pending` with a lease naming the call that will ask Stripe; that call makes the refund
with our idempotency key and records Stripe's answer in a second transaction. A refund left
`pending` without Stripe's id (a crash in between) is finished by whoever takes the lease next:
it first looks for the refund Stripe made for this credit note, and makes one only if there is
none, so a credit note never gets two.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId

from billing.adapters import documents, schema
from billing.adapters.writes import Write, insert, invoice_changes
from billing.domain import money
from billing.domain.inputs import text
from billing.domain.models import (
    CreditLine,
    CreditNote,
    CreditNoteStatus,
    CreditReason,
    Invoice,
    InvoiceStatus,
    Org,
    Payment,
    PaymentStatus,
    Refund,
    RefundLease,
    RefundStatus,
    Settlement,
)
from billing.domain.payments import StripeRefund
from billing.errors import (
    ConfigurationError,
    CreditExceedsTotal,
    InvalidInput,
    InvalidMoney,
    InvoiceNotCreditable,
    LineItemNotFound,
    PaymentInProgress,
    RefundDuplicated,
    RefundExceedsPaid,
    RefundFailed,
    shown,
)
from billing.plans import Plan, events
from billing.plans.invoices import UNSETTLED, event_data, may_move_money

UNPAID = (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE)
MAX_MEMO = 500


@dataclass(frozen=True)
class CreditRequest:
    """A validated `credit_notes.create` call."""

    request_id: str
    reason: CreditReason
    amount: int | None  # a lump sum, or None with `lines`
    lines: tuple[tuple[str, int], ...]  # (line item id, amount)
    memo: str | None
    refund: bool | None  # None: by the invoice's status


@dataclass(frozen=True)
class CreditNotePreview:
    """What `credit_notes.preview` shows: the credit note `create` would return now, the
    invoice as read before it, and `existing_id`: the credit note already issued for the
    request id (then `credit_note` is that one), None when `create` would issue a new one."""

    credit_note: CreditNote
    invoice: Invoice
    existing_id: str | None


def request(*, request_id: Any, reason: Any, amount: Any, lines: Any, memo: Any,
            refund: Any) -> CreditRequest:
    """Validate the arguments (InvalidInput, InvalidMoney); reads nothing."""
    rid = text(request_id, name="request_id", limit=200)
    try:
        why = CreditReason(reason)
    except ValueError:
        raise InvalidInput(f"reason must be one of {', '.join(r.value for r in CreditReason)}, "
                           f"got {shown(reason)}") from None
    if (amount is None) == (lines is None):
        raise InvalidInput("give exactly one of amount (a lump sum) and lines (line item ids "
                           "with amounts)")
    if refund is not None and not isinstance(refund, bool):
        raise InvalidInput(f"refund must be True, False or None, got {shown(refund)}")
    note = None if memo is None else text(memo, name="memo", limit=MAX_MEMO)
    if amount is not None:
        return CreditRequest(rid, why, _positive(amount, "amount"), (), note, refund)
    if isinstance(lines, dict):
        lines = list(lines.items())
    if not isinstance(lines, list | tuple) or not lines:
        raise InvalidInput("lines must be a non-empty list of (line_item_id, amount) pairs")
    parsed: list[tuple[str, int]] = []
    for entry in lines:
        if isinstance(entry, dict):
            entry = (entry.get("line_item_id"), entry.get("amount"))
        if not isinstance(entry, list | tuple) or len(entry) != 2:
            raise InvalidInput(f"each line must be (line_item_id, amount), got {shown(entry)}")
        item = entry[0]
        if isinstance(item, ObjectId):
            item = str(item)
        if not isinstance(item, str) or not ObjectId.is_valid(item) or len(item) != 24:
            raise InvalidInput(f"line_item_id must be a 24-character hex id, got {shown(item)}")
        item = str(ObjectId(item))  # one spelling, as every other id (upper-case hex too)
        if any(item == seen for seen, _ in parsed):
            raise InvalidInput(f"line item {item} is listed twice: give it once")
        parsed.append((item, _positive(entry[1], f"amount of line item {item}")))
    money.total(a for _, a in parsed)
    return CreditRequest(rid, why, None, tuple(parsed), note, refund)


def _positive(value: Any, name: str) -> int:
    checked = money.amount(value, name=name)
    if checked == 0:
        raise InvalidMoney(f"{name} must be at least 1 minor unit, got 0")
    return checked


def refunded(notes: Sequence[CreditNote]) -> int:
    """What the invoice's credit notes refund or are refunding through Stripe."""
    return sum(n.refund.amount for n in notes if n.refund is not None
               and n.refund.status in (RefundStatus.PENDING, RefundStatus.SUCCEEDED))


def credited_on(notes: Sequence[CreditNote], line_item_id: str) -> int:
    """What the invoice's issued credit notes credit on one line item."""
    return sum(li.amount for n in notes if n.status is CreditNoteStatus.ISSUED
               for li in n.lines if li.line_item_id == line_item_id)


def create(
    org: Org, invoice: Invoice, existing: CreditNote | None, notes: Sequence[CreditNote],
    payments: Sequence[Payment], req: CreditRequest, *, now: datetime, lease_seconds: float,
    token: str, box: events.Outbox | None, can_refund: bool = True,
) -> Plan[CreditNote]:
    """Issue a credit note on the invoice, or return the one this request id made. Without a
    gateway (`can_refund` False) a refund is refused before anything is written."""
    if existing is not None:
        if existing.invoice_id != invoice.id:
            raise InvalidInput(f"request_id {req.request_id!r} made credit note {existing.id} "
                               f"of invoice {existing.invoice_id}: use a new request id")
        if (differs := _differs(existing, req)) is not None:
            raise InvalidInput(
                f"request_id {req.request_id!r} made credit note {existing.id} with {differs}: "
                "repeat the call with the same arguments, or use a new request id for another "
                "credit note")
        return Plan(existing)
    if invoice.status not in (*UNPAID, InvoiceStatus.PAID):
        raise InvoiceNotCreditable(
            f"invoice {invoice.id} is {invoice.status.value}: credit notes correct open, "
            "uncollectible or paid invoices (edit a draft's line items instead; a void "
            "invoice owes nothing)")
    amount, lines = _amount(invoice, notes, req)
    left = invoice.total - invoice.amount_credited
    if amount > left:
        raise CreditExceedsTotal(
            f"invoice {invoice.id} has {left} {invoice.currency} (minor units) left to credit "
            f"of its total {invoice.total}; a credit of {amount} would exceed it: credit at "
            "most that")
    note_id = ObjectId()
    refund: Refund | None = None
    if invoice.status in UNPAID:
        if req.refund:
            raise InvalidInput(f"invoice {invoice.id} is unpaid: nothing was paid to refund; "
                               "its amount due goes down (leave refund unset or False)")
        _require_no_payment_in_flight(invoice, payments, now)
        settlement = Settlement.AMOUNT_DUE
    elif req.refund is False:
        settlement = Settlement.OUT_OF_BAND
    else:
        if not can_refund:
            raise ConfigurationError(
                f"invoice {invoice.id} is paid and its credit would be refunded through Stripe, "
                "but there is no payment gateway: pass gateway=StripeGateway(...) to "
                "Billing(...), or refund=False to record a credit settled outside Stripe")
        settlement = Settlement.REFUND
        refund = _new_refund(invoice, notes, payments, amount, note_id, now=now,
                             lease_seconds=lease_seconds, token=token)
    number = org.credit_note_seq + 1
    note = CreditNote(
        id=str(note_id), org_id=invoice.org_id, invoice_id=invoice.id, number=number,
        request_id=req.request_id, status=CreditNoteStatus.ISSUED, currency=invoice.currency,
        amount=amount, reason=req.reason, memo=req.memo, lines=lines, settlement=settlement,
        refund=refund, created_at=now, updated_at=now)
    updates: dict[str, Any] = {"amount_credited": invoice.amount_credited + amount}
    settled = invoice.status in UNPAID and invoice.total - invoice.amount_credited - amount == 0
    if settled:  # as Stripe: an invoice credited in full is paid, without a charge
        updates.update(status=InvoiceStatus.PAID, paid_at=now, amount_paid=0)
    new = invoice.model_copy(update=updates)
    seq = org.credit_note_seq
    emitted: list[tuple[str, dict[str, object]]] = [("credit_note.created", _data(note))]
    if settled:
        emitted.append(("invoice.paid", event_data(new, amount_paid=0, credit_note_id=note.id)))
    writes = [
        Write(schema.ORGS, "update_one",
              {"_id": ObjectId(org.id), "credit_note_seq": seq if seq else {"$in": [None, 0]}},
              {"$set": {"credit_note_seq": number}}),
        insert(schema.CREDIT_NOTES, documents.credit_note_doc(note)),
        *invoice_changes(invoice, new),
        *events.emit(box, emitted),
    ]
    return Plan(note, writes)


def _differs(existing: CreditNote, req: CreditRequest) -> str | None:
    """How a repeat of a request id asks for something else than the credit note it made:
    the first differing field, as the note has it and as this call asks; None if it does not.
    `refund` unset asks for what the invoice's status decided then."""
    lines = sorted((li.line_item_id, li.amount) for li in existing.lines)
    if req.amount is not None and (lines or req.amount != existing.amount):
        had = f"lines {lines}" if lines else f"amount {existing.amount}"
        return f"{had}; this call asks for amount {req.amount}"
    if req.amount is None and sorted(req.lines) != lines:
        had = f"lines {lines}" if lines else f"amount {existing.amount}"
        return f"{had}; this call asks for lines {sorted(req.lines)}"
    if req.reason is not existing.reason:
        return f"reason {existing.reason.value}; this call asks for reason {req.reason.value}"
    refunded_ = existing.settlement is Settlement.REFUND
    if req.refund is not None and req.refund != refunded_:
        return (f"settlement {existing.settlement.value}; this call asks for refund="
                f"{req.refund}")
    if req.memo != existing.memo:
        return f"memo {existing.memo!r}; this call asks for memo {req.memo!r}"
    return None


def _amount(invoice: Invoice, notes: Sequence[CreditNote], req: CreditRequest
            ) -> tuple[int, tuple[CreditLine, ...]]:
    if req.amount is not None:
        return req.amount, ()
    items = {li.id: li for li in invoice.line_items}
    lines = []
    for item_id, amount in req.lines:
        item = items.get(item_id)
        if item is None:
            raise LineItemNotFound(f"no line item {item_id} on invoice {invoice.id}")
        left = item.amount - credited_on(notes, item_id)
        if amount > left:
            raise CreditExceedsTotal(
                f"line item {item_id} of invoice {invoice.id} has {left} {invoice.currency} "
                f"(minor units) left to credit of its {item.amount}; a credit of {amount} "
                "would exceed it: credit at most that")
        lines.append(CreditLine(line_item_id=item_id, amount=amount))
    return money.total(a for _, a in req.lines), tuple(lines)


def _require_no_payment_in_flight(invoice: Invoice, payments: Sequence[Payment],
                                  now: datetime) -> None:
    """The amount due must not move under a payment that may be charging it."""
    lease = invoice.payment_lease
    if lease is not None and lease.expires_at > now:
        raise PaymentInProgress(
            f"invoice {invoice.id} is being paid (payment {lease.payment_id}): credit it after "
            f"that attempt ends, at the latest {lease.expires_at.isoformat()}",
            payment_id=lease.payment_id)
    live = [p for p in payments if may_move_money(p)]
    if live:
        state = live[-1].status.value + (
            ", its intent not canceled in Stripe" if live[-1].status not in UNSETTLED else "")
        raise PaymentInProgress(
            f"payment {live[-1].id} of invoice {invoice.id} ({state}) can still take the amount "
            "due: settle it (invoices.settle_payment, with its payment_id if it is not the "
            "latest) or cancel it (invoices.cancel_payment), then credit the invoice",
            payment_id=live[-1].id)


def _new_refund(invoice: Invoice, notes: Sequence[CreditNote], payments: Sequence[Payment],
                amount: int, note_id: ObjectId, *, now: datetime, lease_seconds: float,
                token: str) -> Refund:
    paid = next((p for p in payments if p.status is PaymentStatus.SUCCEEDED
                 and p.intent_id is not None and p.amount > 0), None)
    left = 0 if paid is None else min(invoice.amount_paid, paid.amount) - refunded(notes)
    if paid is None or amount > left:
        raise RefundExceedsPaid(
            f"invoice {invoice.id} has {max(left, 0)} {invoice.currency} (minor units) paid "
            f"through Stripe and not refunded yet; a refund of {amount} would exceed it: refund "
            "at most that, or pass refund=False to record a credit settled outside Stripe")
    return Refund(
        status=RefundStatus.PENDING, amount=amount, payment_id=paid.id, intent_id=paid.intent_id
        or "", idempotency_key=f"refund:{invoice.org_id}:{note_id}",
        lease=RefundLease(token=token, expires_at=now + timedelta(seconds=lease_seconds)),
        updated_at=now)


def _data(note: CreditNote) -> dict[str, object]:
    return {"credit_note_id": note.id, "number": note.number, "invoice_id": note.invoice_id,
            "amount": note.amount, "currency": note.currency, "reason": note.reason.value,
            "settlement": note.settlement.value,
            "lines": [{"line_item_id": li.line_item_id, "amount": li.amount}
                      for li in note.lines]}


def take_refund(note: CreditNote, *, now: datetime, lease_seconds: float, token: str
                ) -> Plan[CreditNote | None]:
    """Take the lease to finish a pending refund; None when there is nothing left to do."""
    refund = note.refund
    if refund is None or refund.status is not RefundStatus.PENDING:
        return Plan(None)
    if refund.lease is not None and refund.lease.token != token and refund.lease.expires_at > now:
        raise PaymentInProgress(
            f"the refund of credit note {note.id} is being made by another call until "
            f"{refund.lease.expires_at.isoformat()}: retry after that")
    lease = RefundLease(token=token, expires_at=now + timedelta(seconds=lease_seconds))
    taken = note.model_copy(update={"refund": refund.model_copy(update={"lease": lease})})
    return Plan(taken, [_set_refund(note, taken)])


def record_refund(
    note: CreditNote, invoice: Invoice, found: StripeRefund | None, *, now: datetime,
    failure: tuple[str | None, str] | None = None, release: str | None = None,
    box: events.Outbox | None = None,
) -> Plan[CreditNote]:
    """Apply what Stripe said about the credit note's refund: made (Stripe's id recorded),
    succeeded, or failed (`failure`: refused at creation). A failed or canceled refund voids the
    credit note: it credits nothing, and the invoice's credited amount goes back down (the
    invoice stays paid: a refund is only ever made on a paid invoice, whose payment stands).
    One settled refund moves again, as Stripe moves it: a card refund `succeeded` that the
    bank returns later (a closed account) becomes `failed`, with the same effects. Any other
    settled refund never moves. `release` (a token) only gives the lease back.

    RefundDuplicated when Stripe's refund for this credit note is not the one recorded: a
    second refund (nothing written; the recorded one stands)."""
    refund = note.refund
    if refund is None:
        return Plan(note)
    if found is not None and refund.stripe_id is not None and found.id != refund.stripe_id:
        raise duplicated_error(note, found)
    returned = (refund.status is RefundStatus.SUCCEEDED and found is not None
                and found.status is RefundStatus.FAILED and failure is None)
    if refund.status is not RefundStatus.PENDING and not returned:
        return Plan(note)
    if found is None and failure is None:
        if release is None or refund.lease is None or refund.lease.token != release:
            return Plan(note)
        freed = note.model_copy(update={"refund": refund.model_copy(update={"lease": None})})
        return Plan(freed, [_set_refund(note, freed)])
    status = RefundStatus.FAILED if failure is not None else found.status  # type: ignore[union-attr]
    fields: dict[str, Any] = {"status": status, "updated_at": now, "lease": None}
    if found is not None:
        fields["stripe_id"] = found.id
    if failure is not None:
        fields["failure_code"] = failure[0] or "refused"
    elif found is not None and found.failure_reason:
        fields["failure_code"] = found.failure_reason
    new_refund = refund.model_copy(update=fields)
    failed = status in (RefundStatus.FAILED, RefundStatus.CANCELED)
    new_note = note.model_copy(update={"refund": new_refund, "updated_at": now, "status":
                                       CreditNoteStatus.VOID if failed else note.status})
    writes = [_set_refund(note, new_note)]
    emitted: list[tuple[str, dict[str, object]]] = []
    about = {"credit_note_id": note.id, "invoice_id": note.invoice_id, "amount": refund.amount,
             "currency": note.currency, "refund_id": new_refund.stripe_id}
    if failed:
        new_invoice = invoice.model_copy(update={
            "amount_credited": max(0, invoice.amount_credited - note.amount)})
        writes += invoice_changes(invoice, new_invoice)
        emitted.append(("refund.failed", {**about, "failure_code": new_refund.failure_code}))
    elif status is RefundStatus.SUCCEEDED:
        emitted.append(("refund.succeeded", about))
    return Plan(new_note, writes + events.emit(box, emitted))


def failed_error(note: CreditNote) -> RefundFailed:
    code = note.refund.failure_code if note.refund is not None else None
    return RefundFailed(
        f"Stripe did not refund credit note {note.id} of invoice {note.invoice_id} "
        f"({code or 'no code'}): nothing was refunded and the credit note is void; issue a new "
        "one with another request id, or with refund=False to settle it outside Stripe",
        code=code)


def duplicated_error(note: CreditNote, other: StripeRefund) -> RefundDuplicated:
    recorded = note.refund.stripe_id if note.refund is not None else None
    return RefundDuplicated(
        f"Stripe made a second refund for credit note {note.id} of invoice {note.invoice_id}: "
        f"{other.id} ({other.amount} {note.currency}, {other.status.value}) besides {recorded}, "
        "the one the credit note records (a refund request that reached Stripe after its "
        "lease had expired). The customer was given that amount back twice and billing "
        "cannot take it back: settle it with the customer; reconciliation reports it")


def _set_refund(old: CreditNote, new: CreditNote) -> Write:
    """The credit note's refund and status, guarded by the refund state it was read in."""
    assert old.refund is not None and new.refund is not None
    doc = documents.credit_note_doc(new)
    where: dict[str, Any] = {"_id": ObjectId(old.id), "org_id": ObjectId(old.org_id),
                             "refund.status": old.refund.status.value,
                             "refund.stripe_id": old.refund.stripe_id,
                             "refund.lease.token": None if old.refund.lease is None else
                             old.refund.lease.token}
    return Write(schema.CREDIT_NOTES, "update_one", where,
                 {"$set": {"refund": doc["refund"], "status": doc["status"],
                           "updated_at": doc["updated_at"]}})
