"""What each service operation writes, decided from what its transaction read. Pure.

The async services (and the sync ones generated from them) read, call a function of this
package and write its `Plan`: the decisions live here once, for both (reconciliation's in
the billing/plans/reconciliation package), and the pure rules they apply (prices, totals, state
transitions) in billing/domain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from bson import ObjectId

from billing.adapters import documents
from billing.adapters.writes import Write
from billing.domain.models import Invoice, Org
from billing.errors import InvoiceNotFound, OrgNotFound

T = TypeVar("T")
Doc = dict[str, Any]


@dataclass(frozen=True)
class Plan(Generic[T]):
    result: T
    writes: list[Write] = field(default_factory=list)
    done: bool = True  # False: more chunks remain, run the operation again


def new_id() -> str:
    return str(ObjectId())


def require_org(doc: Doc | None, org_id: ObjectId) -> Org:
    if doc is None:
        raise OrgNotFound(f"no org {org_id}: create it with orgs.create() first")
    return documents.org(doc)


def require_invoice(doc: Doc | None, org_id: ObjectId, invoice_id: ObjectId) -> Invoice:
    if doc is None:
        raise InvoiceNotFound(f"no invoice {invoice_id} in org {org_id}")
    return documents.invoice(doc, doc.get("items", []))


