"""The invariants the integration and end-to-end tests check on the whole database (sync
pymongo; pass `Billing.database`, which is timezone-aware), and against Stripe's side.

Billing
    check_totals_and_links(db)    totals equal their line items; every billed conversation
                                  points at a conversations line item of an invoice of its own
                                  org whose period contains it
    check_billed_once(db)         no conversation counted by two invoices
    check_numbers_gapless(db)     finalised invoices of each org are numbered 1..n, n = invoice_seq
    check_closed_months_billed(db, boundary, no_drafts=False)
                                  the above, and every conversation that ended before `boundary`
                                  billed, no draft left half-billed (with `no_drafts`: none)
    unbilled_closed(db, boundary) well-formed conversations that ended before `boundary`, unbilled

Money
    check_paid(db)                paid: amount_paid == total, exactly one succeeded payment
    check_money(doc, taken)       one invoice against what the gateway took for it
    check_charged_once(b, sc)     localstripe: at most one charge per invoice, matching paid ones

Payment methods
    check_defaults(db)            an org's default is an active method of that org
    check_methods(db, gateway)    FakeGateway, after every step: defaults and active methods
                                  attached to the org's current customer; one live record per
                                  card; no card on another customer made for the org
    check_settled(db, gateway)    FakeGateway, after reconciliation: also nothing pending or
                                  detaching, Stripe's cards exactly the active records, no other
                                  customer of the org left (without a current one: only an empty
                                  one its next attach will take over)
    check_methods_match_stripe(b, sc)
                                  localstripe: defaults active, Stripe's attached cards exactly
                                  the active records, nothing pending or detaching

    check_all(db)                 every database-only check above
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime
from typing import Any

import stripe
from bson import ObjectId
from pymongo.database import Database

from billing import Billing
from billing.gateways import FakeGateway
from tests.support.billing_data import OCT

Db = Database[Any]


def check_all(db: Db) -> None:
    check_totals_and_links(db)
    check_billed_once(db)
    check_numbers_gapless(db)
    check_defaults(db)
    check_paid(db)


# ---- billing -------------------------------------------------------------------------------------

def check_totals_and_links(db: Db) -> None:
    items = {li["_id"]: li for li in db.line_items.find({})}
    invoices = {inv["_id"]: inv for inv in db.invoices.find({})}
    for inv in invoices.values():
        mine = [li for li in items.values() if li["invoice_id"] == inv["_id"]]
        assert inv["subtotal"] == inv["total"] == sum(li["amount"] for li in mine), inv
        for li in mine:
            assert li["amount"] == li["quantity"] * li["unit_amount"]
            assert li["org_id"] == inv["org_id"]
        conv_item = next((li for li in mine if li["kind"] == "conversations"), None)
        if conv_item is not None:
            linked = db.conversations.count_documents({"line_item_id": conv_item["_id"]})
            assert linked == conv_item["quantity"] == inv["conversations"], inv
    for conv in db.conversations.find({"line_item_id": {"$ne": None}}):
        li = items[conv["line_item_id"]]
        inv = invoices[li["invoice_id"]]
        assert li["kind"] == "conversations" and li["org_id"] == conv["org_id"]
        assert inv["period_start"] <= conv["ended_at"] < inv["period_end"]


def check_billed_once(db: Db) -> None:
    """The conversations line items together claim exactly the billed conversations."""
    claimed = sum(li["quantity"] for li in db.line_items.find({"kind": "conversations"}))
    billed = db.conversations.count_documents({"line_item_id": {"$ne": None}})
    assert claimed == billed, (claimed, billed)
    per_item = Counter(c["line_item_id"] for c in db.conversations.find(
        {"line_item_id": {"$ne": None}}, {"line_item_id": 1}))
    items = {li["_id"]: li for li in db.line_items.find({"kind": "conversations"})}
    for item_id, n in per_item.items():
        assert item_id in items and items[item_id]["quantity"] == n, (item_id, n)


def check_numbers_gapless(db: Db) -> None:
    numbers: dict[Any, list[int]] = defaultdict(list)
    for inv in db.invoices.find({"number": {"$ne": None}}, {"org_id": 1, "number": 1}):
        numbers[inv["org_id"]].append(inv["number"])
    for org in db.orgs.find({}, {"invoice_seq": 1}):
        mine = sorted(numbers.pop(org["_id"], []))
        assert mine == list(range(1, len(mine) + 1)), (org["_id"], mine)
        assert org.get("invoice_seq", 0) == len(mine), (org, mine)
    assert not numbers, f"numbered invoices of missing orgs: {dict(numbers)}"
    for inv in db.invoices.find({"status": "draft"}):
        assert inv.get("number") is None, inv
    for inv in db.invoices.find({"status": {"$in": ["open", "paid", "uncollectible"]}}):
        assert inv.get("number") is not None, inv


def check_closed_months_billed(db: Db, boundary: datetime = OCT[1], *,
                               no_drafts: bool = False) -> None:
    check_totals_and_links(db)
    assert db.conversations.count_documents(
        {"line_item_id": None, "ended_at": {"$lt": boundary}}) == 0
    if no_drafts:
        assert db.invoices.count_documents({"status": "draft"}) == 0
    for inv in db.invoices.find({"status": "draft"}):
        assert inv["complete"], f"draft {inv['_id']} left part-billed"


def unbilled_closed(db: Db, boundary: datetime) -> list[dict[str, Any]]:
    """Well-formed (dates, started <= ended) conversations that ended before `boundary` and are
    still unbilled."""
    found = db.conversations.find({"line_item_id": None, "ended_at": {"$lt": boundary}})
    return [c for c in found if isinstance(c.get("started_at"), datetime)
            and c["started_at"] <= c["ended_at"]]


# ---- money ---------------------------------------------------------------------------------------

def check_paid(db: Db) -> None:
    succeeded = Counter(p["invoice_id"] for p in db.payments.find({"status": "succeeded"}))
    for inv in db.invoices.find({"status": "paid"}):
        assert inv["amount_paid"] == inv["total"], inv
        assert succeeded[inv["_id"]] == 1, (inv, succeeded[inv["_id"]])
        assert inv.get("payment_lease") is None, inv
    for inv in db.invoices.find({"status": {"$in": ["open", "draft", "uncollectible"]}}):
        assert succeeded[inv["_id"]] == 0, (inv, "a succeeded payment on an unpaid invoice")


def check_money(doc: dict[str, Any], taken: int) -> None:
    """Never more than the total taken; `paid` exactly when all of it was (a zero total needs
    nothing), with amount_paid what was taken; a void invoice took nothing. `doc` is the stored
    invoice, `taken` what the gateway took for it, with no answer outstanding."""
    assert taken <= doc["total"], (taken, doc)
    assert (doc["status"] == "paid") == (taken == doc["total"]), (taken, doc)
    if doc["status"] == "paid":
        assert doc["amount_paid"] == taken, (taken, doc)
    if doc["status"] == "void":
        assert taken == 0, (taken, doc)


def check_charged_once(b: Billing, sc: stripe.StripeClient) -> None:
    """At most one succeeded charge per invoice; a paid invoice's amount_paid is its total and
    matches the one charge; no charge on an invoice that is not paid."""
    db = b.database
    for org in db.orgs.find({"stripe_customer_id": {"$type": "string"}}):
        charges = sc.v1.charges.list(params={"customer": org["stripe_customer_id"]}).data
        per_invoice: dict[str, list[Any]] = {}
        for charge in charges:
            if charge.status == "succeeded" and not charge.refunded:
                intent = sc.v1.payment_intents.retrieve(str(charge.payment_intent))
                meta = intent.metadata.to_dict() if intent.metadata else {}
                invoice_id = str(meta.get("invoice_id", "?"))
                per_invoice.setdefault(invoice_id, []).append(charge)
        for invoice_id, found in per_invoice.items():
            assert len(found) == 1, f"invoice {invoice_id} charged {len(found)} times"
        for inv in db.invoices.find({"org_id": org["_id"]}):
            found = per_invoice.get(str(inv["_id"]), [])
            if inv["status"] == "paid":
                assert inv["amount_paid"] == inv["total"] and inv.get("payment_lease") is None
                assert [c.amount for c in found] == [inv["total"]], inv["_id"]
            else:
                assert found == [], f"invoice {inv['_id']} charged but {inv['status']}"


# ---- payment methods -----------------------------------------------------------------------------

def check_defaults(db: Db) -> None:
    for org in db.orgs.find({}):
        default = org.get("default_payment_method_id")
        if default is None:
            continue
        method = db.payment_methods.find_one({"_id": _oid(default), "org_id": org["_id"]})
        assert method is not None and method["status"] == "active", (org, method)


def customers_of(gateway: FakeGateway, org_id: Any) -> list[str]:
    """The fake's live customers whose metadata names the org."""
    return sorted(cid for cid, meta in gateway.customers.items()
                  if meta["org_id"] == str(org_id))


def attached_to(gateway: FakeGateway, customer: str | None) -> set[str]:
    return {m.id for m in gateway.methods.values()
            if customer is not None and m.customer_id == customer}


def check_methods(db: Db, gateway: FakeGateway) -> None:
    live = Counter((d["org_id"], d["stripe_id"]) for d in db.payment_methods.find(
        {"status": {"$in": ["active", "detaching"]}}))
    assert all(n == 1 for n in live.values()), f"two live records of one card: {live}"
    check_defaults(db)
    for org in db.orgs.find({}):
        customer = org.get("stripe_customer_id")
        if customer is not None:
            assert customer in gateway.customers, f"org {org['_id']} records deleted {customer}"
        for doc in db.payment_methods.find({"org_id": org["_id"], "status": "active"}):
            method = gateway.methods.get(doc["stripe_id"])
            assert method is not None and customer is not None \
                and method.customer_id == customer, (org, doc, method)
        for other in customers_of(gateway, org["_id"]):
            if other != customer:
                assert attached_to(gateway, other) == set(), \
                    f"cards on {other}, a customer of org {org['_id']} not in use"


def check_settled(db: Db, gateway: FakeGateway) -> None:
    check_methods(db, gateway)
    assert db.payment_methods.count_documents(
        {"status": {"$in": ["pending", "detaching"]}}) == 0
    for org in db.orgs.find({}):
        customer = org.get("stripe_customer_id")
        active = {d["stripe_id"] for d in db.payment_methods.find(
            {"org_id": org["_id"], "status": "active"})}
        assert attached_to(gateway, customer) == active, org
        made = customers_of(gateway, org["_id"])
        if customer is not None:
            assert made == [customer], org
        else:  # a creation whose answer was lost: empty, the org's next attach takes it over
            generation = str(org.get("customer_generation") or 0)
            assert org.get("customer_claim") is not None or made == [], org
            assert all(gateway.customers[c]["billing_generation"] == generation
                       and attached_to(gateway, c) == set() for c in made), org


def attached_in_stripe(sc: stripe.StripeClient, customer: str | None) -> set[str]:
    assert customer, "the org has no Stripe customer"
    found = sc.v1.payment_methods.list(params={"customer": customer})
    return {str(m.id) for m in found.data}


def check_methods_match_stripe(b: Billing, sc: stripe.StripeClient) -> None:
    db = b.database
    check_defaults(db)
    for org in db.orgs.find({}):
        if not org.get("stripe_customer_id"):
            continue
        active = {d["stripe_id"] for d in db.payment_methods.find(
            {"org_id": org["_id"], "status": "active"})}
        assert active == attached_in_stripe(sc, org["stripe_customer_id"]), org["name"]
    assert db.payment_methods.count_documents({"status": {"$in": ["pending", "detaching"]}}) == 0


def _oid(value: Any) -> ObjectId:
    return value if isinstance(value, ObjectId) else ObjectId(str(value))
