"""The data contract: collection names, indexes and validators that `setup()` installs.

Every index leads with `org_id`, so every tenant query is served by an index and scoped to one org.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ORGS = "orgs"
CONVERSATIONS = "conversations"
INVOICES = "invoices"
LINE_ITEMS = "line_items"
PAYMENT_METHODS = "payment_methods"
PAYMENTS = "payments"
WEBHOOK_EVENTS = "webhook_events"  # processed events, written in the effect's transaction
WEBHOOK_LOG = "webhook_log"  # failed deliveries, written outside any transaction (audit)
RECONCILIATION_RUNS = "reconciliation_runs"  # one audit record per --apply run
RECONCILIATION_LEASES = "reconciliation_leases"  # _id "shard:I/N": one --apply run per shard
SCHEMA_MIGRATIONS = "schema_migrations"  # _id = version: the migrations `setup` applied
COLLECTION_RUNS = "collection_runs"  # one audit record per `collect --apply` run
CREDIT_NOTES = "credit_notes"  # corrections of finalised invoices, with their refunds
EVENTS = "billing_events"  # the outbox: what the host is told, written with each change
# The index `record` finds a conversation by external_id on (see CONVERSATIONS below).
EXTERNAL_ID_LOOKUP = "external_id_lookup"
# Payment-method statuses that hold their Stripe method (at most one such record per method).
LIVE_HOLDING = ["active", "detaching"]


@dataclass(frozen=True)
class Index:
    keys: list[tuple[str, int]]
    name: str
    unique: bool = False
    partial: dict[str, Any] | None = None
    expire_after: int | None = None  # seconds: a TTL index

    def options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {"name": self.name, "unique": self.unique}
        if self.partial is not None:
            opts["partialFilterExpression"] = self.partial
        if self.expire_after is not None:
            opts["expireAfterSeconds"] = self.expire_after
        return opts


@dataclass(frozen=True)
class Collection:
    name: str
    indexes: tuple[Index, ...] = ()
    validator: dict[str, Any] | None = field(default=None)


_INT = {"bsonType": ["int", "long"]}
_MONEY = {"bsonType": ["int", "long"], "minimum": 0}
_DATE = {"bsonType": "date"}
_OID = {"bsonType": "objectId"}
_CURRENCY = {"bsonType": "string", "pattern": "^[a-z]{3}$"}


def _schema(required: list[str], **props: Any) -> dict[str, Any]:
    return {"$jsonSchema": {"bsonType": "object", "required": required, "properties": props}}


COLLECTIONS: tuple[Collection, ...] = (
    Collection(
        ORGS,
        indexes=(
            # Webhooks name the customer: the customer id is how Stripe tells us the tenant.
            Index([("stripe_customer_id", 1)], "stripe_customer", unique=True,
                  partial={"stripe_customer_id": {"$type": "string"}}),
        ),
        validator=_schema(
            ["name", "currency", "prices", "invoice_seq", "created_at"],
            name={"bsonType": "string", "minLength": 1},
            currency=_CURRENCY,
            prices=_schema(
                ["per_conversation", "per_started_minute"],
                per_conversation=_MONEY,
                per_started_minute=_MONEY,
            )["$jsonSchema"],
            invoice_seq=_MONEY,
            event_seq=_MONEY,
            credit_note_seq=_MONEY,
            customer_generation=_MONEY,
            created_at=_DATE,
        ),
    ),
    # Written by the host backend: no validator, malformed documents are skipped and reported.
    Collection(
        CONVERSATIONS,
        indexes=(
            # Unbilled conversations of an org by end time; also finds those of a line item.
            Index([("org_id", 1), ("line_item_id", 1), ("ended_at", 1), ("_id", 1)], "billing"),
            Index(
                [("org_id", 1), ("external_id", 1)], "external_id", unique=True,
                partial={"external_id": {"$type": "string"}},
            ),
            # `record`'s lookup by external_id. The unique index above cannot serve it on
            # SecantusDB 0.7.0b3, whose planner uses a partial index only for `$eq` and range
            # filters (it scanned the collection on every call); mongod uses either.
            Index([("org_id", 1), ("external_id", 1), ("_id", 1)], EXTERNAL_ID_LOOKUP),
        ),
    ),
    Collection(
        INVOICES,
        indexes=(
            # The idempotency key of create_for_period: one invoice per org, period and supplement.
            Index(
                [("org_id", 1), ("period_start", 1), ("period_end", 1), ("supplement", 1)],
                "one_per_period", unique=True,
            ),
            Index(
                [("org_id", 1), ("number", 1)], "number", unique=True,
                partial={"number": {"$type": ["int", "long"]}},
            ),
            Index([("org_id", 1), ("status", 1), ("complete", 1)], "status"),
        ),
        validator=_schema(
            ["org_id", "status", "complete", "period_start", "period_end", "supplement",
             "currency", "subtotal", "total", "version"],
            org_id=_OID,
            status={"enum": ["draft", "open", "paid", "void", "uncollectible"]},
            complete={"bsonType": "bool"},
            period_start=_DATE,
            period_end=_DATE,
            supplement=_MONEY,
            currency=_CURRENCY,
            subtotal=_MONEY,
            total=_MONEY,
            version=_INT,
        ),
    ),
    Collection(
        LINE_ITEMS,
        indexes=(Index([("org_id", 1), ("invoice_id", 1)], "by_invoice"),),
        validator=_schema(
            ["org_id", "invoice_id", "kind", "quantity", "unit_amount", "amount", "currency"],
            org_id=_OID,
            invoice_id=_OID,
            kind={"enum": ["conversations", "minutes", "manual"]},
            quantity=_MONEY,
            unit_amount=_MONEY,
            amount=_MONEY,
            currency=_CURRENCY,
        ),
    ),
    Collection(
        PAYMENT_METHODS,
        indexes=(
            # The idempotency key of attach: one payment method per org and request id.
            Index([("org_id", 1), ("request_id", 1)], "request", unique=True),
            Index([("org_id", 1), ("stripe_id", 1)], "stripe_id"),
            # One live record per Stripe method: two attaches or adoptions of one card collide.
            Index([("org_id", 1), ("stripe_id", 1)], "live_stripe_id", unique=True,
                  partial={"stripe_id": {"$type": "string"}, "status": {"$in": LIVE_HOLDING}}),
            Index([("org_id", 1), ("status", 1)], "status"),
        ),
        validator=_schema(
            ["org_id", "request_id", "status", "created_at"],
            org_id=_OID,
            request_id={"bsonType": "string", "minLength": 1},
            status={"enum": ["pending", "active", "detaching", "detached", "failed"]},
        ),
    ),
    Collection(
        PAYMENTS,
        indexes=(
            Index([("org_id", 1), ("invoice_id", 1), ("attempt", 1)], "attempt", unique=True),
            Index([("org_id", 1), ("intent_id", 1)], "intent"),
            Index([("org_id", 1), ("status", 1)], "status"),
        ),
        validator=_schema(
            ["org_id", "invoice_id", "attempt", "status", "amount", "currency",
             "idempotency_key"],
            org_id=_OID,
            invoice_id=_OID,
            attempt=_MONEY,
            status={"enum": ["pending", "confirming", "processing", "requires_action",
                             "succeeded", "failed", "canceled"]},
            amount=_MONEY,
            currency=_CURRENCY,
        ),
    ),
    Collection(
        CREDIT_NOTES,
        indexes=(
            # The idempotency key of credit_notes.create: one credit note per org and request.
            Index([("org_id", 1), ("request_id", 1)], "request", unique=True),
            # Gapless per org, assigned in the transaction that stores the credit note.
            Index([("org_id", 1), ("number", 1)], "number", unique=True),
            Index([("org_id", 1), ("invoice_id", 1)], "by_invoice"),
            # Reconciliation finds refunds left pending; webhooks find ours by Stripe's id.
            Index([("org_id", 1), ("refund.status", 1)], "refund_status"),
            Index([("org_id", 1), ("refund.stripe_id", 1)], "refund_stripe_id"),
        ),
        validator=_schema(
            ["org_id", "invoice_id", "number", "request_id", "status", "currency", "amount",
             "reason", "settlement", "created_at"],
            org_id=_OID,
            invoice_id=_OID,
            number={"bsonType": ["int", "long"], "minimum": 1},
            request_id={"bsonType": "string", "minLength": 1},
            status={"enum": ["issued", "void"]},
            currency=_CURRENCY,
            amount={"bsonType": ["int", "long"], "minimum": 1},
            reason={"enum": ["duplicate", "fraudulent", "order_change",
                             "product_unsatisfactory"]},
            settlement={"enum": ["amount_due", "refund", "out_of_band"]},
            created_at=_DATE,
        ),
    ),
    # Reconciliation reports the events that disagreed with our records, per org.
    Collection(WEBHOOK_EVENTS, indexes=(Index([("org_id", 1), ("outcome", 1)], "outcome"),)),
    Collection(WEBHOOK_LOG),
    Collection(RECONCILIATION_RUNS),
    Collection(RECONCILIATION_LEASES),
    Collection(SCHEMA_MIGRATIONS),
    Collection(COLLECTION_RUNS),
    Collection(
        EVENTS,
        indexes=(
            # One number per org, in commit order; poll reads an org's events after a number.
            Index([("org_id", 1), ("seq", 1)], "org_seq", unique=True),
            # Retention: each event carries its own expiry (Billing(event_retention=...)).
            Index([("expires_at", 1)], "retention", expire_after=0),
        ),
    ),
)


# Where tenant data lives on a sharded cluster (docs/scaling.md): every tenant collection by
# `org_id`, so an org's documents stay together and every unique index (all prefixed by
# `org_id`) remains enforceable; the rest are small or keyed by ids from elsewhere (Stripe's
# event ids, shard names) and stay unsharded on the database's primary shard.
SHARD_KEYS: dict[str, dict[str, int]] = {
    CONVERSATIONS: {"org_id": 1},
    INVOICES: {"org_id": 1},
    LINE_ITEMS: {"org_id": 1},
    PAYMENT_METHODS: {"org_id": 1},
    PAYMENTS: {"org_id": 1},
    CREDIT_NOTES: {"org_id": 1},
    EVENTS: {"org_id": 1},
}
UNSHARDED = (ORGS, WEBHOOK_EVENTS, WEBHOOK_LOG, RECONCILIATION_RUNS, RECONCILIATION_LEASES,
             SCHEMA_MIGRATIONS, COLLECTION_RUNS)
