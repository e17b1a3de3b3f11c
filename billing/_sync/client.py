# Generated from billing/_async by tools/synchro.py: do not edit.
"""AsyncBilling: the entry point, wiring the services to one MongoDB client."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pymongo import MongoClient
from pymongo.errors import OperationFailure, PyMongoError

from billing import options
from billing._sync.context import Context
from billing._sync.conversations import Conversations
from billing._sync.gateway import PaymentGateway
from billing._sync.invoices import Invoices
from billing._sync.line_items import LineItems
from billing._sync.orgs import Orgs
from billing._sync.payment_methods import PaymentMethods
from billing._sync.reconciler import Reconciler
from billing._sync.unit_of_work import UnitOfWork
from billing._sync.webhooks import Webhooks
from billing.adapters.mongo_errors import translate
from billing.adapters.schema import COLLECTIONS
from billing.domain.periods import utc
from billing.errors import ConfigurationError

GATEWAY_METHODS = ("create_customer", "attach", "detach", "retrieve_payment_method",
                   "list_payment_methods", "create_intent", "confirm_intent", "retrieve_intent",
                   "cancel_intent")
CLIENTS = "Billing takes a pymongo MongoClient, AsyncBilling an AsyncMongoClient"
GATEWAYS = "billing.gateways.StripeGateway for Billing, its Async twin for AsyncBilling"
_INDEX_CONFLICT = frozenset({85, 86})  # IndexOptionsConflict, IndexKeySpecsConflict
_NAMESPACE_EXISTS = 48


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _milliseconds(clock: Callable[[], datetime]) -> Callable[[], datetime]:
    """Timestamps at BSON's precision, so what a call returns equals what it stored."""
    return lambda: utc(clock(), name="clock()")


class Billing:
    """Usage billing on one MongoDB database.

    `client` must reach a replica set or sharded cluster (transactions). The instance is cheap,
    holds no connections of its own and is safe to share between tasks.

    Options: `max_docs_per_transaction` bounds the conversations one transaction bills (MongoDB's
    guidance is 1,000); `transaction_retry_seconds` bounds retries of conflicting transactions;
    `client_bulk_write` forces (True) or forbids (False) one `bulkWrite` command across
    collections, detected from the server by default (MongoDB 8.0+); `joined_reads` reads an
    org's billing snapshot in one `$lookup` aggregate (True) or three aggregates (False), by
    default one except on SecantusDB, whose `$lookup` scans; `gateway` takes payments
    (`AsyncStripeGateway`); `webhook_secret` verifies Stripe webhooks; `payment_lease_seconds`
    is how long one payment attempt holds an invoice before another may take over; `clock` is
    for tests. A bad option (wrong type, NaN or infinite seconds, a database name MongoDB
    refuses) raises ConfigurationError here, at construction.
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
        gateway: PaymentGateway | None = None,
        webhook_secret: str | None = None,
        payment_lease_seconds: float = 60.0,
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
            joined_reads=options.flag(joined_reads, name="joined_reads"))
        ctx = Context(self._uow, _milliseconds(options.clock(clock)), max_docs,
                           gateway, lease_seconds,
                           options.secret(webhook_secret, name="webhook_secret"))
        self.orgs = Orgs(ctx)
        self.conversations = Conversations(ctx)
        self.invoices = Invoices(ctx)
        self.line_items = LineItems(ctx)
        self.payment_methods = PaymentMethods(ctx)
        self.webhooks = Webhooks(ctx)
        self.reconciliation = Reconciler(ctx, self.invoices)

    @property
    def database(self) -> Any:
        """The pymongo database (timezone-aware), for tools and tests."""
        return self._uow.db

    def setup(self) -> None:
        """Create the collections, validators and indexes of the data contract. Idempotent.

        Raises ConfigurationError if an index of the same name exists with other keys or options
        (drop it, then run setup again) or the server has no transactions.
        """
        self._uow.check_server()
        db = self._uow.db
        try:
            existing = set(db.list_collection_names())
            for spec in COLLECTIONS:
                if spec.name not in existing:
                    try:
                        options: dict[str, Any] = {}
                        if spec.validator:
                            options["validator"] = spec.validator
                        db.create_collection(spec.name, **options)
                    except OperationFailure as exc:
                        if exc.code != _NAMESPACE_EXISTS:  # created concurrently
                            raise
                elif spec.validator:
                    db.command("collMod", spec.name, validator=spec.validator)
                for index in spec.indexes:
                    db[spec.name].create_index(index.keys, **index.options())
        except OperationFailure as exc:
            if exc.code in _INDEX_CONFLICT:
                raise ConfigurationError(
                    f"an existing index conflicts with billing's data contract ({exc}): "
                    "drop that index, then run setup() again"
                ) from exc
            raise translate(exc) from exc
        except PyMongoError as exc:
            raise translate(exc) from exc
