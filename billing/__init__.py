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
    LineItem,
    LineItemKind,
    Org,
    Prices,
)
from billing.domain.periods import Period
from billing.errors import (
    BillingError,
    ConfigurationError,
    CurrencyMismatch,
    DatabaseError,
    InvalidInput,
    InvalidMoney,
    InvalidPeriod,
    InvalidTransition,
    InvoiceNotEditable,
    InvoiceNotFound,
    LineItemNotFound,
    NotFound,
    NothingToBill,
    OrgNotFound,
    PeriodNotClosed,
    StateConflict,
    TransientDatabaseError,
)
from billing.runs import Outcome, RunSummary

__all__ = [
    "AsyncBilling", "Billing", "BillingError", "ConfigurationError", "Conversation",
    "CurrencyMismatch", "DatabaseError", "InvalidInput", "InvalidMoney", "InvalidPeriod",
    "InvalidTransition", "Invoice", "InvoiceNotEditable", "InvoiceNotFound", "InvoiceStatus",
    "LineItem", "LineItemKind", "LineItemNotFound", "NotFound", "NothingToBill", "Org",
    "OrgNotFound", "Outcome", "Period", "PeriodNotClosed", "Prices", "RunSummary",
    "StateConflict", "TransientDatabaseError",
]
