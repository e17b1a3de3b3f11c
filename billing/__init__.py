"""Usage billing on MongoDB with Stripe: conversations in, invoices out, billed exactly once.

    from billing import Billing         # over pymongo.MongoClient
    from billing import AsyncBilling    # over pymongo.AsyncMongoClient

Errors are in `billing.errors` (the tree is drawn in its docstring) and re-exported here.
"""

from __future__ import annotations

from billing._async.client import AsyncBilling
from billing._sync.client import Billing
from billing.domain.models import (
    Conversation,
    Invoice,
    InvoiceStatus,
    LateUsage,
    LineItem,
    LineItemKind,
    Org,
    Payment,
    PaymentMethod,
    PaymentMethodStatus,
    PaymentStatus,
    Prices,
)
from billing.domain.periods import Period
from billing.errors import (
    AmountBelowMinimum,
    BillingError,
    CardDeclined,
    ConfigurationError,
    CurrencyMismatch,
    DatabaseError,
    DatabaseUnavailable,
    InvalidInput,
    InvalidMoney,
    InvalidPeriod,
    InvalidTransition,
    InvoiceNotEditable,
    InvoiceNotFound,
    InvoiceNotPayable,
    LeaseNotAcquired,
    LineItemNotFound,
    NoDefaultPaymentMethod,
    NotFound,
    NothingToBill,
    OrgNotFound,
    PaymentError,
    PaymentInProgress,
    PaymentMethodNotFound,
    PaymentProviderUnavailable,
    PaymentRequiresAction,
    PeriodNotClosed,
    StateConflict,
    TransientDatabaseError,
    WebhookRejected,
)
from billing.invoice_runs import Outcome, RunSummary
from billing.plans.webhooks import WebhookOutcome, WebhookResult

__all__ = [
    "AmountBelowMinimum",
    "AsyncBilling",
    "Billing",
    "BillingError",
    "CardDeclined",
    "ConfigurationError",
    "Conversation",
    "CurrencyMismatch",
    "DatabaseError",
    "DatabaseUnavailable",
    "InvalidInput",
    "InvalidMoney",
    "InvalidPeriod",
    "InvalidTransition",
    "Invoice",
    "InvoiceNotEditable",
    "InvoiceNotFound",
    "InvoiceNotPayable",
    "InvoiceStatus",
    "LateUsage",
    "LeaseNotAcquired",
    "LineItem",
    "LineItemKind",
    "LineItemNotFound",
    "NoDefaultPaymentMethod",
    "NotFound",
    "NothingToBill",
    "Org",
    "OrgNotFound",
    "Outcome",
    "Payment",
    "PaymentError",
    "PaymentInProgress",
    "PaymentMethod",
    "PaymentMethodNotFound",
    "PaymentMethodStatus",
    "PaymentProviderUnavailable",
    "PaymentRequiresAction",
    "PaymentStatus",
    "Period",
    "PeriodNotClosed",
    "Prices",
    "RunSummary",
    "StateConflict",
    "TransientDatabaseError",
    "WebhookOutcome",
    "WebhookRejected",
    "WebhookResult",
]
