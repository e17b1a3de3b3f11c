# Generated from billing/_async by tools/synchro.py: do not edit.
"""AsyncBilling: the entry point, wiring the services to one MongoDB client."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import MongoClient

from billing import options
from billing._sync import schema_setup
from billing._sync.collect import Collections
from billing._sync.conversations import Conversations
from billing._sync.credit_notes import CreditNotes
from billing._sync.events import Events
from billing._sync.gateway import PaymentGateway
from billing._sync.invoices import Invoices
from billing._sync.line_items import LineItems
from billing._sync.orgs import Orgs
from billing._sync.payment_methods import PaymentMethods
from billing._sync.reconcile_run import Reconciler
from billing._sync.service_context import Context
from billing._sync.unit_of_work import UnitOfWork
from billing._sync.webhooks import Webhooks
from billing.domain import inputs
from billing.domain.periods import utc
from billing.plans.collections import DEFAULT_SCHEDULE
from billing.plans.events import DEFAULT_RETENTION
from billing.schema_report import SchemaReport

GATEWAY_METHODS = ("create_customer", "attach", "detach", "retrieve_payment_method",
                   "list_payment_methods", "create_intent", "confirm_intent", "retrieve_intent",
                   "cancel_intent", "find_customers", "delete_customer", "refund",
                   "retrieve_refund", "list_refunds")
CLIENTS = "Billing takes a pymongo MongoClient, AsyncBilling an AsyncMongoClient"
GATEWAYS = "billing.gateways.StripeGateway for Billing, its Async twin for AsyncBilling"


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _milliseconds(clock: Callable[[], datetime]) -> Callable[[], datetime]:
    """Timestamps at BSON's precision, so what a call returns equals what it stored."""
    return lambda: utc(clock(), name="clock()")


class Billing:
    """Usage billing on one MongoDB database.

    `client` must reach a replica set or sharded cluster (transactions). The instance is cheap,
    holds no connections of its own and is safe to share between tasks.

    Options: `max_docs_per_transaction` bounds the conversations one transaction bills
    (MongoDB's guidance is 1,000); `transaction_retry_seconds` bounds retries of conflicting
    transactions; `client_bulk_write` forces (True) or forbids (False) one `bulkWrite` command
    across collections, detected from the server by default (MongoDB 8.0+); `joined_reads` reads
    an org's billing snapshot in one `$lookup` aggregate (True) or two aggregates (False), by
    default one except on SecantusDB, whose `$lookup` of conversations scans;
    `max_concurrent_transactions` caps the transactions this instance runs at once (its tasks
    or threads beyond it wait their turn; 0: no cap), by default none except on SecantusDB,
    which runs one at a time;
    `gateway` takes payments (the Stripe gateway from `billing.gateways` matching this client:
    sync or async);
    `webhook_secret` verifies Stripe webhooks; `payment_lease_seconds` is how long one payment
    attempt holds an invoice (and one call the creation of an org's Stripe customer) before
    another may take over; `collection_schedule` the days after
    finalisation on which `collect` attempts payment (default 0, 3, 5, 7; per org:
    `orgs.set_collection_schedule`); `event_retention` how long billing events are kept (default
    90 days); `clock` is for tests. A bad option (wrong type, NaN or infinite
    seconds, a database name MongoDB refuses, a bad schedule) raises ConfigurationError here,
    at construction.
    """

    def __init__(
        self,
        client: MongoClient[dict[str, Any]],
        *,
        database: str = "billing",
        max_docs_per_transaction: int = 1000,
        transaction_retry_seconds: float = 120.0,
        client_bulk_write: bool | None = None,
        joined_reads: bool | None = None,
        max_concurrent_transactions: int | None = None,
        gateway: PaymentGateway | None = None,
        webhook_secret: str | None = None,
        payment_lease_seconds: float = 60.0,
        collection_schedule: Sequence[int] = DEFAULT_SCHEDULE,
        event_retention: timedelta = DEFAULT_RETENTION,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        # Every option is checked here, so a bad one fails now (ConfigurationError), not at the
        # first call with a pymongo or built-in error.
        options.instance(client, MongoClient, name="client",
                         example=CLIENTS)
        database = options.database(database)
        max_docs = options.count(max_docs_per_transaction, name="max_docs_per_transaction",
                                 low=1, high=100_000)
        retry_seconds = options.seconds(transaction_retry_seconds,
                                        name="transaction_retry_seconds")
        lease_seconds = options.seconds(payment_lease_seconds, name="payment_lease_seconds")
        # The gateway's methods must be coroutines exactly when this class's are.
        options.gateway(gateway, methods=GATEWAY_METHODS,
                        coroutines=inspect.iscoroutinefunction(self.setup), example=GATEWAYS)
        self._uow = UnitOfWork(
            client, database, retry_seconds=retry_seconds,
            client_bulk_write=options.flag(client_bulk_write, name="client_bulk_write"),
            joined_reads=options.flag(joined_reads, name="joined_reads"),
            max_concurrent_transactions=options.cap(max_concurrent_transactions,
                                                    name="max_concurrent_transactions"))
        self._ctx = ctx = Context(
            self._uow, _milliseconds(options.clock(clock)), max_docs, gateway, lease_seconds,
            options.secret(webhook_secret, name="webhook_secret"),
            options.schedule(collection_schedule, name="collection_schedule"),
            options.retention(event_retention, name="event_retention"))
        self.orgs = Orgs(ctx)
        self.conversations = Conversations(ctx)
        self.invoices = Invoices(ctx)
        self.line_items = LineItems(ctx)
        self.payment_methods = PaymentMethods(ctx)
        self.webhooks = Webhooks(ctx)
        self.reconciliation = Reconciler(ctx, self.invoices)
        self.collections = Collections(ctx, self.invoices.payments)
        self.events = Events(ctx)
        self.credit_notes = CreditNotes(ctx)

    @property
    def database(self) -> Any:
        """The pymongo database (timezone-aware), for tools and tests."""
        return self._uow.db

    def setup(self, *, shard: bool = False) -> SchemaReport:
        """Bring the database to this version's data contract: create the collections,
        validators and indexes that are missing, update validators that differ, then apply
        pending migrations in order (each recorded in `schema_migrations`, each safe to rerun
        and to interrupt). Idempotent; returns what it changed (`report.current` is True:
        the database is now at this code's version). With `shard=True`, on a mongos, it then
        shards the tenant collections (`shard()`); anywhere else it refuses before writing.

        Raises ConfigurationError if an index of the same name exists with other keys or options
        (drop it, then run setup again), the database is at a newer schema version than this
        code, the server has no transactions, or `shard` is asked of a server not a mongos.
        """
        shard = inputs.flag(shard, name="shard")
        self._uow.check_server()
        if shard:
            schema_setup.require_mongos(self._uow.client)
        report = schema_setup.apply(self._uow.db, now=self._ctx.now())
        if shard:
            report.changes += schema_setup.shard(self._uow.client, self._uow.db)
        return report

    def shard(self) -> list[str]:
        """On a mongos: shard the tenant collections by `org_id` (docs/scaling.md), once;
        returns what it sharded. ConfigurationError elsewhere. Run `setup` first."""
        self._uow.check_server()
        return schema_setup.shard(self._uow.client, self._uow.db)

    def schema_drift(self) -> SchemaReport:
        """What `setup` would change (missing or different collections, validators, indexes,
        pending migrations); writes nothing. `report.current` is True when nothing would."""
        self._uow.check_server()
        return schema_setup.check(self._uow.db)

    def require_schema(self) -> None:
        """ConfigurationError unless `setup` has brought this database to this code's version
        (never set up, a misspelt database name, or migrations pending)."""
        self._uow.check_server()
        schema_setup.require_current(self._uow.db)
