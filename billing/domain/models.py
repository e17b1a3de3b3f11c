"""The documents `billing` returns, as immutable pydantic models (ids as 24-hex strings)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from billing.domain.money import CURRENCIES


class InvoiceStatus(StrEnum):
    DRAFT = "draft"
    OPEN = "open"
    PAID = "paid"
    VOID = "void"
    UNCOLLECTIBLE = "uncollectible"


class LineItemKind(StrEnum):
    CONVERSATIONS = "conversations"  # quantity = number of conversations
    MINUTES = "minutes"  # quantity = started minutes
    MANUAL = "manual"  # added by line_items.add on a draft


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


# Counters and prices as stored: ints only (a string "3" read as 3 would never match the
# write guards built from it, and every write would look like a conflict).
Count = Annotated[int, Field(ge=0, strict=True)]


def _iso_currency(value: str) -> str:
    if value not in CURRENCIES:
        raise ValueError(f"{value!r} is not an ISO 4217 currency code in lower case")
    return value


class Prices(_Model):
    per_conversation: Count
    per_started_minute: Count


class CustomerClaim(_Model):
    """Taken before the org's Stripe customer is created, so one call creates it at a time."""

    generation: int  # the customer's generation: its creation key and metadata carry it
    holder: str | None  # the call creating it; None once released after a failure
    expires_at: datetime  # after this another call may take over
    first_claimed_at: datetime  # a later claim looks for customers created since then


class CustomerAudit(_Model):
    """When Stripe may hold extra customers made for the org (a creation taken over, or one not
    wanted and not deleted): reconciliation looks for them there."""

    since: datetime
    until: datetime


class Org(_Model):
    id: str
    name: str
    currency: Annotated[str, AfterValidator(_iso_currency)]
    prices: Prices
    stripe_customer_id: str | None = None
    customer_generation: Count = 0  # bumped when the org's Stripe customer is deleted
    customer_claim: CustomerClaim | None = None
    customer_audit: CustomerAudit | None = None
    default_payment_method_id: str | None = None
    invoice_seq: Count = 0  # number of the org's last finalised invoice
    collection_schedule: tuple[int, ...] | None = None  # retry days; None: the deployment's
    event_seq: Count = 0  # number of the org's last billing event
    credit_note_seq: Count = 0  # number of the org's last credit note
    created_at: datetime


class Conversation(_Model):
    id: str
    org_id: str
    started_at: datetime
    ended_at: datetime
    external_id: str | None = None
    line_item_id: str | None = None


class LineItem(_Model):
    id: str
    org_id: str
    invoice_id: str
    kind: LineItemKind
    description: str
    quantity: int
    unit_amount: int
    amount: int
    currency: str


class PaymentLease(_Model):
    """Held by one payment attempt while it talks to Stripe; others wait for it or its expiry."""

    payment_id: str
    expires_at: datetime
    token: str | None = None  # names the call holding it: only that call may confirm


class ResumeKey(_Model):
    """Where a bounded run goes on: every conversation up to (`ended_at`, `id`) in the billing
    index order has been read by an earlier chunk (`id` all f's: every one that ended at
    `ended_at`); the next chunk reads the stretch of end times after that, `span_ms` long,
    sized from the chunks so far."""

    ended_at: datetime
    id: str
    span_ms: int = Field(ge=1)


class Invoice(_Model):
    id: str
    org_id: str
    number: int | None = None  # gapless per org, assigned at finalisation
    status: InvoiceStatus
    complete: bool  # every conversation of the period has been collected onto it
    period_start: datetime
    period_end: datetime
    supplement: int = 0  # 0: the period's invoice; 1, 2...: supplementary ones
    currency: str
    subtotal: int
    total: int
    conversations: int = 0
    skipped_malformed: int = 0  # unbilled conversations in the period that cannot be priced
    resume_after: ResumeKey | None = None  # set while a bounded run is incomplete
    # A draft whose last billing call asked to keep it a draft (finalize=False): late usage
    # billed onto it, even while its run is still collecting, leaves it one.
    keep_draft: bool = False
    line_items: tuple[LineItem, ...] = ()
    created_at: datetime
    finalized_at: datetime | None = None
    version: int = 0  # bumped by every write: guards concurrent read-modify-write
    payment_attempts: int = 0
    payment_lease: PaymentLease | None = None
    amount_paid: int = 0
    paid_at: datetime | None = None
    amount_credited: int = 0  # by credit notes; the total and line items never change

    @property
    def amount_due(self) -> int:
        """What a payment still has to collect: total less credits and payments; nothing once
        the invoice is void."""
        if self.status is InvoiceStatus.VOID:
            return 0
        return max(0, self.total - self.amount_credited - self.amount_paid)

    def item(self, kind: LineItemKind) -> LineItem | None:
        return next((li for li in self.line_items if li.kind is kind), None)

    @property
    def display_number(self) -> str | None:
        return None if self.number is None else f"{self.number:06d}"


class LateUsage(_Model):
    """What `invoices.bill_late_usage` would bill for a closed period, read without writing:
    how many conversations are late and onto which of the period's invoices they would go."""

    org_id: str
    period_start: datetime
    period_end: datetime
    conversations: int  # well-formed, unbilled, ended in the period
    supplement: int  # 0: the period's invoice; 1, 2...: a supplementary invoice
    invoice_id: str | None = None  # the period's draft they would join; None: a new invoice
    stays_draft: bool = False  # a draft kept open for editing (finalize=False) stays a draft


class PaymentMethodStatus(StrEnum):
    PENDING = "pending"  # attach started; reconciliation finishes or undoes it
    ACTIVE = "active"
    DETACHING = "detaching"  # no longer usable; the Stripe detach may still be due
    DETACHED = "detached"
    FAILED = "failed"  # the attach was refused or compensated


class PaymentMethod(_Model):
    id: str
    org_id: str
    request_id: str
    status: PaymentMethodStatus
    stripe_id: str | None = None
    customer_id: str | None = None
    brand: str | None = None
    last4: str | None = None
    exp_month: int | None = None
    exp_year: int | None = None
    created_at: datetime
    updated_at: datetime | None = None
    failure: str | None = None  # why a failed attach failed
    duplicate_of: str | None = None  # failed because this live method holds the same card


class PaymentStatus(StrEnum):
    PENDING = "pending"  # intent being created, or created and never sent to be confirmed
    CONFIRMING = "confirming"  # confirmation sent: only Stripe's state says how it ended
    PROCESSING = "processing"  # Stripe is processing: a webhook finishes it
    REQUIRES_ACTION = "requires_action"  # 3-D Secure: the customer must authenticate
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


class Payment(_Model):
    id: str
    org_id: str
    invoice_id: str
    attempt: int
    status: PaymentStatus
    amount: int
    currency: str
    idempotency_key: str
    payment_method_id: str | None = None
    stripe_payment_method: str | None = None
    customer_id: str | None = None
    intent_id: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    # A failed attempt's intent canceled in Stripe: until then (`requires_payment_method`) it can
    # still be confirmed, e.g. by the customer on-session, and take money.
    intent_canceled: bool = False
    created_at: datetime
    updated_at: datetime | None = None


class CreditReason(StrEnum):
    """Stripe's credit note reasons."""

    DUPLICATE = "duplicate"
    FRAUDULENT = "fraudulent"
    ORDER_CHANGE = "order_change"
    PRODUCT_UNSATISFACTORY = "product_unsatisfactory"


class CreditNoteStatus(StrEnum):
    ISSUED = "issued"
    VOID = "void"  # its refund failed: it credits nothing


class Settlement(StrEnum):
    """How a credit note gives the money back."""

    AMOUNT_DUE = "amount_due"  # an unpaid invoice: the amount still due goes down
    REFUND = "refund"  # a paid invoice: refunded through Stripe
    OUT_OF_BAND = "out_of_band"  # a paid invoice: settled outside Stripe (as Stripe's)


class RefundStatus(StrEnum):
    PENDING = "pending"  # claimed here; Stripe may or may not have made it yet
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


class RefundLease(_Model):
    """Held by the one call that may ask Stripe for the refund; others wait for its expiry."""

    token: str
    expires_at: datetime


class Refund(_Model):
    """A credit note's refund: our record of it, found again by the credit note's id."""

    status: RefundStatus
    amount: int
    payment_id: str
    intent_id: str
    idempotency_key: str
    stripe_id: str | None = None  # re_...: once Stripe's answer is recorded
    lease: RefundLease | None = None
    failure_code: str | None = None
    updated_at: datetime | None = None


class CreditLine(_Model):
    line_item_id: str
    amount: int


class CreditNote(_Model):
    id: str
    org_id: str
    invoice_id: str
    number: int  # gapless per org
    request_id: str
    status: CreditNoteStatus
    currency: str
    amount: int
    reason: CreditReason
    memo: str | None = None
    lines: tuple[CreditLine, ...] = ()  # empty: a lump sum
    settlement: Settlement
    refund: Refund | None = None
    created_at: datetime
    updated_at: datetime | None = None

    @property
    def display_number(self) -> str:
        return f"CN-{self.number:06d}"


class Event(_Model):
    """A billing event (`billing_events`): numbered per org in commit order."""

    id: str
    org_id: str
    seq: int
    type: str
    data: dict[str, Any]
    created_at: datetime
