"""The repairs `reconcile --apply` makes: one frozen dataclass per kind. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from bson import ObjectId

from billing.domain.periods import Period

Doc = dict[str, Any]
LIVE = ["pending", "active", "detaching"]  # payment method states that still hold a card


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


@dataclass(frozen=True)
class FinishRefund:
    """A credit note's refund left pending: made once, or settled from Stripe's state."""

    kind: ClassVar[str] = "finish_refund"
    credit_note_id: ObjectId


BillingRepair = ReleaseLinks | DeleteOrphanItem | Retotal | ResumeDraft | BillLate
MethodRepair = (ClearDefault | ForgetCustomer | FinishDetach | MarkGone | FinishAttach | Adopt
                | DeleteExtraCustomer | DetachOrphan)
Repair = BillingRepair | MethodRepair | SettlePayment | FinishRefund
