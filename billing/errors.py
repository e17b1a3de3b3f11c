"""Every error `billing` raises, in one tree.

    BillingError                      base; `retryable` says whether the same call may succeed later
    ├── InvalidInput (ValueError)     the arguments are wrong; nothing was written
    │   ├── InvalidPeriod             naive datetimes, end before start, malformed month
    │   │   └── PeriodNotClosed       the period has not ended yet
    │   ├── InvalidMoney              float, bool, negative or overflowing amount, unknown currency
    │   └── WebhookRejected           bad signature, stale timestamp, malformed payload: no retry
    ├── NotFound (LookupError)        no such document in this org (other orgs' ids are not found)
    │   ├── OrgNotFound
    │   ├── InvoiceNotFound
    │   ├── LineItemNotFound
    │   └── PaymentMethodNotFound     also: Stripe has no such payment method or customer
    ├── StateConflict                 the documents are in a state that forbids the operation
    │   ├── UnreadableDocument        a stored document breaks the data contract: fix it
    │   ├── InvoiceNotEditable        finalised, paid or void invoices cannot be edited
    │   ├── InvalidTransition         e.g. voiding a paid invoice
    │   ├── CurrencyMismatch          a line item's or invoice's currency differs from the org's
    │   ├── NothingToBill             no unbilled conversations in the period
    │   ├── InvoiceNotPayable         not open, nothing to pay, or already paid
    │   │   └── AmountBelowMinimum    below the payment provider's minimum charge
    │   ├── InvoiceNotCreditable      credit notes are for open, uncollectible or paid invoices
    │   ├── CreditExceedsTotal        the credit would exceed what is left to credit (total or line)
    │   ├── RefundExceedsPaid         the refund would exceed what was paid and not yet refunded
    │   ├── NoDefaultPaymentMethod    the org has no usable default payment method
    │   └── LeaseNotAcquired          retryable: another reconciliation run holds the shard
    ├── PaymentError                  Stripe did not take the payment (the invoice stays open)
    │   ├── CardDeclined              declined: ask the customer for another payment method
    │   ├── PaymentRequiresAction     3-D Secure or similar: the customer must authenticate
    │   ├── PaymentInProgress         retryable: another attempt holds the invoice, or an earlier
    │   │                             intent can still move money (processing, state unknown)
    │   ├── RefundFailed              Stripe refused or failed the refund: the credit note is void
    │   ├── RefundDuplicated          Stripe holds a second refund for one credit note
    │   └── PaymentProviderUnavailable  retryable: network failure, Stripe 5xx or rate limit
    ├── ConfigurationError            a missing extra, a bad URI, a server without transactions,
    │                                 a rejected Stripe key, a bad Billing(...) option (raised
    │                                 when the object is built)
    └── DatabaseError                 MongoDB failed; the operation did not complete
        └── TransientDatabaseError    retryable: conflicts, elections, timeouts, lost connections
            └── DatabaseUnavailable   retryable: no server can be reached; long runs stop at once

Adapters translate `pymongo.errors.PyMongoError` at the edge (`raise ... from exc`), so callers
catch `BillingError` subclasses only. Every message says what happened and what to do.
"""

from __future__ import annotations


class BillingError(Exception):
    """Base of every error raised by `billing`."""

    retryable: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(BillingError, ValueError):
    """The arguments are invalid. Nothing was written; fix the call."""


class InvalidPeriod(InvalidInput):
    """The billing period is malformed (naive datetime, end not after start, bad month)."""


class PeriodNotClosed(InvalidPeriod):
    """The period ends in the future: bill it once it has closed."""


class InvalidMoney(InvalidInput):
    """An amount is not a non-negative integer of minor units, or the currency is unknown."""


class NotFound(BillingError, LookupError):
    """No such document within the given org."""


class OrgNotFound(NotFound):
    pass


class InvoiceNotFound(NotFound):
    pass


class LineItemNotFound(NotFound):
    pass


class StateConflict(BillingError):
    """The documents' current state forbids the operation. Nothing was written."""


class UnreadableDocument(StateConflict):
    """A stored document breaks the data contract (a field missing or of the wrong type, written
    by something else than billing): billing cannot read it, so the operation stopped there.
    Fix or remove the document (the README's data contract says what each field must be)."""


class InvoiceNotEditable(StateConflict):
    pass


class InvalidTransition(StateConflict):
    pass


class CurrencyMismatch(StateConflict):
    pass


class NothingToBill(StateConflict):
    pass


class ConfigurationError(BillingError):
    """The environment is not usable: missing extra, bad URI, no replica set, a bad option
    of Billing(...) / AsyncBilling(...)."""


class DatabaseError(BillingError):
    """MongoDB failed and the operation did not complete (its transaction was rolled back)."""


class TransientDatabaseError(DatabaseError):
    """A temporary database failure. The transaction was rolled back; retry the same call."""

    retryable = True


class DatabaseUnavailable(TransientDatabaseError):
    """No MongoDB server could be reached (server selection timed out). Retrying the same call
    later may succeed; a run over many orgs stops at once instead of failing org after org."""


class WebhookRejected(InvalidInput):
    """The webhook is not authentic or not parseable: answer 400 and do not retry."""


class PaymentMethodNotFound(NotFound):
    pass


class InvoiceNotPayable(StateConflict):
    pass


class NoDefaultPaymentMethod(StateConflict):
    pass


class AmountBelowMinimum(InvoiceNotPayable):
    """The amount due is below the smallest charge the payment provider accepts in its currency.
    Nothing was sent to Stripe; the invoice stays open."""


class InvoiceNotCreditable(StateConflict):
    """Credit notes correct finalised invoices that are open, uncollectible or paid: edit a
    draft instead, and a void invoice owes nothing."""


class CreditExceedsTotal(StateConflict):
    """The credit would take the invoice (or a line item) below zero: credit at most what is
    left, which the message states. Nothing was written."""


class RefundExceedsPaid(StateConflict):
    """The refund would exceed what was paid and not refunded yet: refund less, or credit the
    rest with refund=False (settled outside Stripe). Nothing was written."""


class PaymentError(BillingError):
    """Stripe did not take the payment. The invoice stays open; the attempt is recorded."""

    def __init__(self, message: str, *, code: str | None = None,
                 payment_id: str | None = None, decline_code: str | None = None) -> None:
        super().__init__(message)
        self.code = code  # Stripe's error code, e.g. "card_declined", when it gave one
        self.payment_id = payment_id  # the attempt concerned, when there is one
        self.decline_code = decline_code  # the issuer's reason, e.g. "lost_card", if given


class CardDeclined(PaymentError):
    pass


class PaymentRequiresAction(PaymentError):
    pass


class PaymentInProgress(PaymentError):
    retryable = True


class PaymentProviderUnavailable(PaymentError):
    retryable = True


class RefundFailed(PaymentError):
    """Stripe refused or failed the refund: nothing was refunded and the credit note is void
    (it credits nothing); issue a new one with another request id, or refund=False."""


class RefundDuplicated(PaymentError):
    """Stripe made a second refund for one credit note (a refund request that reached Stripe
    after its lease had expired and another call had made the refund, with Stripe not
    replaying our idempotency key). The credit note records one; the other is money given
    back twice, which billing cannot take back: reconciliation reports it for a person."""


class LeaseNotAcquired(StateConflict):
    """Another reconciliation run holds this shard's lease: let it finish, or retry later."""

    retryable = True


def shown(value: object, limit: int = 60) -> str:
    """`repr(value)` cut to `limit` characters, for messages that quote what they refuse."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."
