"""Payment-method invariants against the in-memory FakeGateway's state (sync pymongo).

    check_methods(db, gateway)     after every step: each org's default is an active method of
                                   that org, attached in Stripe to the org's current customer;
                                   every active method is; at most one live record per Stripe
                                   method; no card attached to another customer made for the org
    check_settled(db, gateway)     after reconciliation: also nothing pending or detaching, the
                                   current customer's cards are exactly the active records, and
                                   no other customer made for the org is left (without a current
                                   one: only an empty one its next attach will take over)
    customers_of(gateway, org_id)  the fake's live customers whose metadata names the org
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from bson import ObjectId
from pymongo.database import Database

from billing.gateways import FakeGateway


def customers_of(gateway: FakeGateway, org_id: Any) -> list[str]:
    return sorted(cid for cid, meta in gateway.customers.items()
                  if meta["org_id"] == str(org_id))


def attached_to(gateway: FakeGateway, customer: str | None) -> set[str]:
    return {m.id for m in gateway.methods.values()
            if customer is not None and m.customer_id == customer}


def check_methods(db: Database[Any], gateway: FakeGateway) -> None:
    live = Counter((d["org_id"], d["stripe_id"]) for d in db.payment_methods.find(
        {"status": {"$in": ["active", "detaching"]}}))
    assert all(n == 1 for n in live.values()), f"two live records of one card: {live}"
    for org in db.orgs.find({}):
        customer = org.get("stripe_customer_id")
        if customer is not None:
            assert customer in gateway.customers, f"org {org['_id']} records deleted {customer}"
        for doc in db.payment_methods.find({"org_id": org["_id"], "status": "active"}):
            method = gateway.methods.get(doc["stripe_id"])
            assert method is not None and customer is not None \
                and method.customer_id == customer, (org, doc, method)
        default = org.get("default_payment_method_id")
        if default is not None:
            doc = db.payment_methods.find_one({"_id": ObjectId(default), "org_id": org["_id"]})
            assert doc is not None and doc["status"] == "active", (org, doc)
        for other in customers_of(gateway, org["_id"]):
            if other != customer:
                assert attached_to(gateway, other) == set(), \
                    f"cards on {other}, a customer of org {org['_id']} not in use"


def check_settled(db: Database[Any], gateway: FakeGateway) -> None:
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
