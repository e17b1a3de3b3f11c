"""Two orgs with every kind of document, for the bad-input and tenant-isolation tests.

    world = two_orgs(billing)   # billing with a localstripe gateway and a webhook secret

Org A (usd) and org B (eur) each have: an open September invoice, an October draft with a
manual line item, an active default payment method (`pm_card_visa` on localstripe) and a
conversation with an external id. B's September invoice is paid (a succeeded payment), so
every collection a mutating call could touch holds a document of the other org.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId

from billing import Billing
from tests.support.billing_data import OCT, seed_conversations

SEP = (datetime(2026, 9, 1, tzinfo=UTC), datetime(2026, 10, 1, tzinfo=UTC))
WEBHOOK_SECRET = "whsec_isolation_tests"


@dataclass(frozen=True)
class Tenant:
    org: str
    open_invoice: str  # September, finalised (B's is paid)
    draft: str  # October, not finalised
    manual_item: str  # on the draft
    usage_item: str  # the draft's conversations line item
    method: str  # active, the org's default
    conversation: str  # recorded with external id `external_id`
    external_id: str
    payment: str | None  # B only: the payment of its September invoice


@dataclass(frozen=True)
class World:
    a: Tenant
    b: Tenant


def _tenant(b: Billing, name: str, currency: str, *, pay: bool) -> Tenant:
    org = b.orgs.create(name=name, currency=currency, per_conversation=50, per_started_minute=10)
    seed_conversations(b.database, org.id, 3, start=SEP[0])
    seed_conversations(b.database, org.id, 3)
    open_invoice = b.invoices.create_for_period(org.id, *SEP)
    draft = b.invoices.create_for_period(org.id, *OCT, finalize=False)
    manual = b.line_items.add(org.id, draft.id, description="Setup fee", quantity=1,
                              unit_amount=500)
    usage = next(li for li in b.invoices.get(org.id, draft.id).line_items
                 if li.kind.value == "conversations")
    method = b.payment_methods.attach(org.id, "pm_card_visa", request_id=f"req-{name}")
    external_id = f"call-{name}"
    conv = b.conversations.record(org.id, started_at=datetime(2026, 11, 2, tzinfo=UTC),
                                  ended_at=datetime(2026, 11, 2, 0, 5, tzinfo=UTC),
                                  external_id=external_id)
    payment = b.invoices.pay(org.id, open_invoice.id).id if pay else None
    return Tenant(org.id, open_invoice.id, draft.id, manual.id, usage.id, method.id, conv.id,
                  external_id, payment)


def two_orgs(b: Billing) -> World:
    return World(a=_tenant(b, "A", "usd", pay=False), b=_tenant(b, "B", "eur", pay=True))


def unknown_id() -> str:
    return str(ObjectId())


def contains(haystack: Any, needle: str) -> bool:
    """Whether `needle` appears anywhere in the repr of `haystack` (documents, reports)."""
    return needle in repr(haystack)
