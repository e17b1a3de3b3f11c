"""The one transaction seam: sessions, `with_transaction`, retries and error translation."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC
from typing import Any, TypeVar

from bson.codec_options import CodecOptions
from pymongo import AsyncMongoClient, ReadPreference, ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import (
    BulkWriteError,
    ClientBulkWriteException,
    DuplicateKeyError,
    PyMongoError,
    ServerSelectionTimeoutError,
)
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from billing.adapters import queries
from billing.adapters.mongo_errors import translate, translated
from billing.adapters.writes import (
    DUPLICATE_KEY,
    StaleRead,
    Write,
    check_counts,
    client_models,
    collection_models,
)
from billing.admission import AsyncAdmission
from billing.errors import ConfigurationError, DatabaseUnavailable, TransientDatabaseError

T = TypeVar("T")
Doc = dict[str, Any]
CLIENT_BULK_WRITE_WIRE_VERSION = 25  # MongoDB 8.0


# Transactions one instance runs at once on SecantusDB (`max_concurrent_transactions`).
SECANTUS_CONCURRENT_TRANSACTIONS = 1
_DECIDING = threading.Lock()  # held without awaiting: one gate per instance, in both builds
_MAX_TIME_MS_EXPIRED = 50
# What a caller is told when a commit may or may not have taken effect.
COMMIT_UNKNOWN = ("whether it took effect is unknown: calls that are idempotent (invoice runs, "
                  "record with an external_id, calls with a request_id) are safe to repeat; "
                  "check before repeating any other")
AGGREGATE_BATCH = 100_001  # above max_docs_per_transaction + 1; a batch stays under 16 MB


class _OutOfTime(Exception):
    """A transaction attempt would start after the run's retry deadline."""


class AsyncTransaction:
    """Reads and writes bound to one session inside `with_transaction`."""

    def __init__(self, uow: AsyncUnitOfWork, session: AsyncClientSession) -> None:
        self._uow = uow
        self.session = session
        self._has_read = False

    @property
    def joined_reads(self) -> bool:
        """Whether the server reads an org's snapshot best in one joined read (see the unit of
        work's `joined_reads`); repositories choose their query shapes by it."""
        return self._uow.joined_reads

    def _read(self) -> AsyncClientSession:
        self._has_read = True
        return self.session

    async def aggregate_one(self, collection: str, pipeline: list[Doc]) -> Doc | None:
        options: dict[str, Any] = {"hint": hint} if (hint := queries.pipeline_hint(pipeline)) \
            else {}
        cursor = await self._uow.db[collection].aggregate(pipeline, session=self._read(),
                                                          **options)
        docs = await cursor.to_list(1)
        return docs[0] if docs else None

    async def aggregate(self, collection: str, pipeline: list[Doc]) -> list[Doc]:
        """Every result in the first batch (bounded by the pipeline, e.g. a chunk's $limit):
        one command, no getMore."""
        cursor = await self._uow.db[collection].aggregate(pipeline, session=self._read(),
                                                          batchSize=AGGREGATE_BATCH)
        docs: list[Doc] = await cursor.to_list()
        return docs

    async def find_one(self, collection: str, filter: Doc, *, hint: str | None = None
                       ) -> Doc | None:
        return await self._uow.db[collection].find_one(filter, session=self._read(),
                                                       **queries.hinted(filter, hint))

    async def find(self, collection: str, filter: Doc, *, limit: int = 1000,
                   hint: str | None = None) -> list[Doc]:
        cursor = self._uow.db[collection].find(filter, session=self._read()).sort("_id", 1)
        if hint is not None:
            cursor = cursor.hint(hint)
        return await cursor.limit(limit).to_list()

    async def count(self, collection: str, filter: Doc) -> int:
        return await self._uow.db[collection].count_documents(filter, session=self._read(),
                                                              **queries.hinted(filter))

    async def write(self, writes: list[Write]) -> None:
        """Apply the writes; check every guard. One `bulkWrite` command where the server has it."""
        if not writes:
            return
        # One command across collections needs bulkWrite (MongoDB 8.0). SecantusDB 0.7.0b3 also
        # refuses the readConcern a transaction's first command carries on bulkWrite (MongoDB
        # accepts it), so it is used after a read; a single collection needs no bulkWrite.
        spread = len({w.collection for w in writes}) > 1
        try:
            if self._uow.client_bulk_write and spread and self._has_read:
                result = await self._uow.client.bulk_write(
                    client_models(writes, self._uow.db.name), session=self.session, ordered=True
                )
                check_counts(writes, matched=result.matched_count, deleted=result.deleted_count)
            else:
                for collection, models in collection_models(writes).items():
                    res = await self._uow.db[collection].bulk_write(
                        models, session=self.session, ordered=True
                    )
                    check_counts([w for w in writes if w.collection == collection],
                                 matched=res.matched_count, deleted=res.deleted_count)
        except ClientBulkWriteException as exc:
            # pymongo wraps a whole-command failure (e.g. WriteConflict) without its error
            # labels; re-raise the inner error so with_transaction sees TransientTransactionError.
            if isinstance(exc.error, PyMongoError):
                raise exc.error from exc
            _raise_stale_on_duplicate(exc.write_errors or [], exc)
            raise
        except BulkWriteError as exc:
            _raise_stale_on_duplicate(exc.details.get("writeErrors", []), exc)
            raise


class Duplicate(Exception):
    """A direct write hit a unique index: the document it would create exists already."""


class AsyncDirect:
    """Reads and single-document writes outside any transaction: run audits, leases, the
    webhook log, listings and the event stream. One command each, errors translated to the
    billing tree. Anything that changes money or spans documents goes through
    `AsyncUnitOfWork.run` instead.
    """

    def __init__(self, uow: AsyncUnitOfWork) -> None:
        self._uow = uow

    @property
    def database_name(self) -> str:
        return self._uow.db.name

    async def find_one(self, collection: str, filter: Doc) -> Doc | None:
        await self._uow.check_server()
        with translated():
            doc: Doc | None = await self._uow.db[collection].find_one(filter,
                                                                      **queries.hinted(filter))
        return doc

    async def find(self, collection: str, filter: Doc, *, sort: Sequence[tuple[str, int]] = (
                   ("_id", 1),), limit: int = 0, hint: str | None = None,
                   projection: Doc | None = None) -> list[Doc]:
        """`sort=()` leaves the order to the index the server picks (no sort stage)."""
        await self._uow.check_server()
        with translated():
            cursor = self._uow.db[collection].find(filter, projection)
            if sort:
                cursor = cursor.sort(list(sort))
            if hint is not None:
                cursor = cursor.hint(hint)
            docs: list[Doc] = await cursor.limit(limit).to_list()
        return docs

    async def count(self, collection: str, filter: Doc) -> int:
        await self._uow.check_server()
        with translated():
            return await self._uow.db[collection].count_documents(filter)

    async def aggregate(self, collection: str, pipeline: list[Doc], *,
                        hint: str | None = None) -> list[Doc]:
        await self._uow.check_server()
        options: dict[str, Any] = {"hint": hint} if hint else {}
        with translated():
            cursor = await self._uow.db[collection].aggregate(pipeline, **options)
            docs: list[Doc] = await cursor.to_list()
        return docs

    async def insert_one(self, collection: str, doc: Doc) -> None:
        """Duplicate if a unique index already holds its key."""
        await self._uow.check_server()
        with translated():  # Duplicate is raised inside: translated() would turn it into a
            try:            # DatabaseError
                await self._uow.db[collection].insert_one(doc)
            except DuplicateKeyError as exc:
                raise Duplicate(str(exc)) from None

    async def update_one(self, collection: str, filter: Doc, update: Doc, *,
                         upsert: bool = False) -> int:
        """The number of documents matched (0 or 1)."""
        await self._uow.check_server()
        with translated():
            result = await self._uow.db[collection].update_one(filter, update, upsert=upsert)
        return result.matched_count

    async def find_one_and_update(self, collection: str, filter: Doc, update: Doc, *,
                                  upsert: bool = False, before: bool = False) -> Doc | None:
        """The document after the update (before it with `before=True`), or None if none
        matched; Duplicate when an upsert collides with a document the filter excludes."""
        await self._uow.check_server()
        returned = ReturnDocument.BEFORE if before else ReturnDocument.AFTER
        with translated():
            try:
                doc: Doc | None = await self._uow.db[collection].find_one_and_update(
                    filter, update, upsert=upsert, return_document=returned)
            except DuplicateKeyError as exc:
                raise Duplicate(str(exc)) from None
        return doc

    async def delete_one(self, collection: str, filter: Doc) -> int:
        await self._uow.check_server()
        with translated():
            result = await self._uow.db[collection].delete_one(filter)
        return result.deleted_count

    async def watch(self, collection: str, pipeline: list[Doc], *,
                    resume_after: Doc | None = None) -> AsyncChangeStream:
        await self._uow.check_server()
        with translated():
            stream = await self._uow.db[collection].watch(pipeline, resume_after=resume_after)
        return AsyncChangeStream(stream)

    async def distinct(self, collection: str, key: str, filter: Doc) -> list[Any]:
        await self._uow.check_server()
        with translated():
            return list(await self._uow.db[collection].distinct(key, filter))

    async def estimated_count(self, collection: str) -> int:
        """From the collection's metadata: one cheap command, no scan (may be slightly off)."""
        await self._uow.check_server()
        with translated():
            return await self._uow.db[collection].estimated_document_count()


class AsyncChangeStream:
    """A change stream whose errors are translated; `next()` returns the next change."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    async def next(self) -> Doc:
        with translated():
            change: Doc = await self._stream.next()
        return change

    async def close(self) -> None:
        with translated():
            await self._stream.close()


def _raise_stale_on_duplicate(errors: Sequence[Any], exc: Exception) -> None:
    if any(e.get("code") == DUPLICATE_KEY for e in errors):
        raise StaleRead("duplicate key") from exc


class AsyncUnitOfWork:
    """Runs work in a transaction with `with_transaction`, retrying what is safe to retry.

    The work callback may run several times: it must only read and write through the
    transaction it is given (no Stripe calls, no counters, nothing outside the database).
    """

    def __init__(
        self, client: AsyncMongoClient[Doc], database: str, *, retry_seconds: float = 120.0,
        client_bulk_write: bool | None = None, joined_reads: bool | None = None,
        max_concurrent_transactions: int | None = None,
    ) -> None:
        self.client = client
        self.db = client.get_database(
            database, codec_options=CodecOptions(tz_aware=True, tzinfo=UTC)
        )
        self.retry_seconds = retry_seconds
        self._prefer_client_bulk_write = client_bulk_write
        self.client_bulk_write = False
        self._prefer_joined_reads = joined_reads
        self.joined_reads = True
        self._prefer_concurrent = max_concurrent_transactions
        self.admission = AsyncAdmission(None)
        self._checked = False
        self.direct = AsyncDirect(self)

    async def check_server(self) -> None:
        """Once per instance: transactions need a replica set; `bulkWrite` needs MongoDB 8.0."""
        if self._checked:
            return
        try:
            hello = await self.client.admin.command("hello")
        except PyMongoError as exc:
            raise translate(exc) from exc
        if "setName" not in hello and hello.get("msg") != "isdbgrid":
            raise ConfigurationError(
                "MongoDB is a standalone server: billing needs transactions, so use a replica "
                "set (add ?replicaSet=NAME) or a sharded cluster; docker-compose.yml starts one"
            )
        wire = int(hello.get("maxWireVersion", 0))
        supported = wire >= CLIENT_BULK_WRITE_WIRE_VERSION
        self.client_bulk_write = supported and self._prefer_client_bulk_write is not False
        secantus = False
        if self._prefer_joined_reads is None or self._prefer_concurrent is None:
            try:
                build = await self.client.admin.command("buildInfo")
            except PyMongoError as exc:
                raise translate(exc) from exc
            secantus = "secantusVersion" in build
        # SecantusDB's $lookup of conversations reads the whole collection, so one
        # joined read of an org's snapshot grows with the data; mongod's uses the index.
        self.joined_reads = not secantus if self._prefer_joined_reads is None \
            else self._prefer_joined_reads
        # SecantusDB runs one statement at a time across transactions, and each statement
        # waits on every transaction in flight: 16 at once bill at a fifth of the rate of one at
        # a time. mongod runs them in parallel.
        limit = self._prefer_concurrent if self._prefer_concurrent is not None \
            else SECANTUS_CONCURRENT_TRANSACTIONS if secantus else 0
        with _DECIDING:  # the first of callers checking at once decides the gate (no await)
            if not self._checked:
                self.admission = AsyncAdmission(limit or None)
                self._checked = True

    async def run(self, work: Callable[[AsyncTransaction], Awaitable[T]]) -> T:
        """Run `work` in one transaction (snapshot reads, majority commit) and return its result.

        Write conflicts, transient errors and commit uncertainty are retried by
        `with_transaction`; stale reads (a guard or unique index tripped) by this loop, with a
        fresh snapshot each time. Both stop once `retry_seconds` have passed (pymongo alone
        would retry transient errors for 120 s whatever the setting): TransientDatabaseError.
        Time spent waiting for a slot (`max_concurrent_transactions`) does not count.
        A server that cannot be selected is not retried: DatabaseUnavailable as soon as server
        selection times out (the client's serverSelectionTimeoutMS), so a run over many orgs
        stops at once instead of waiting `retry_seconds` per org.
        """
        await self.check_server()
        deadline = time.monotonic() + self.retry_seconds  # moved on by every wait for a slot
        attempt = 0

        async def attempt_once(session: AsyncClientSession) -> T:
            # Runs again after every transient error: the transaction was aborted, so stopping
            # here leaves nothing written.
            if time.monotonic() >= deadline:
                raise _OutOfTime
            try:
                result = await work(AsyncTransaction(self, session))
            except ServerSelectionTimeoutError as exc:
                raise _Unreachable(committing=False) from exc
            await _commit(session, deadline)
            return result

        while True:
            try:
                queued = time.monotonic()
                async with self.admission.slot(), self.client.start_session() as session:
                    deadline += time.monotonic() - queued  # waiting is not retrying
                    return await session.with_transaction(
                        attempt_once,
                        read_concern=ReadConcern("snapshot"),
                        write_concern=WriteConcern("majority"),
                        read_preference=ReadPreference.PRIMARY,
                    )
            except (StaleRead, DuplicateKeyError) as exc:
                attempt += 1
                if time.monotonic() >= deadline:
                    raise TransientDatabaseError(
                        f"gave up after {attempt} attempts: the documents kept changing under "
                        "concurrent writers; nothing was written, retry the call"
                    ) from exc
                await asyncio.sleep(random.uniform(0, min(0.002 * 2**attempt, 0.25)))
            except _OutOfTime:
                raise TransientDatabaseError(
                    f"gave up after {self.retry_seconds:g} s of transient database errors (write "
                    "conflicts, or lost connections); nothing was written, retry the call"
                ) from None
            except _Unreachable as exc:
                raise DatabaseUnavailable(exc.message) from exc.__cause__
            except PyMongoError as exc:
                if exc.has_error_label("UnknownTransactionCommitResult"):
                    raise TransientDatabaseError(
                        f"the database did not confirm the commit ({type(exc).__name__}) until "
                        f"the retry time ran out: {COMMIT_UNKNOWN}") from exc
                raise translate(exc) from exc


class _Unreachable(Exception):
    """Server selection timed out: not a PyMongoError, so `with_transaction` does not retry it."""

    def __init__(self, *, committing: bool) -> None:
        outcome = f" during the commit: {COMMIT_UNKNOWN}" if committing \
            else ": the transaction was rolled back"
        self.message = (f"MongoDB is unreachable (server selection timed out){outcome}. Check "
                        "the URI, the network and that the replica set has a primary, then retry")
        super().__init__(self.message)


async def _commit(session: AsyncClientSession, deadline: float) -> None:
    """Commit inside the callback, retrying an unknown outcome as `with_transaction` would, but
    only until `deadline` and never past a server that cannot be selected."""
    while True:
        try:
            await session.commit_transaction()
            return
        except ServerSelectionTimeoutError as exc:
            raise _Unreachable(committing=True) from exc
        except PyMongoError as exc:
            if (exc.has_error_label("UnknownTransactionCommitResult")
                    and getattr(exc, "code", None) != _MAX_TIME_MS_EXPIRED
                    and time.monotonic() < deadline):
                continue
            raise  # TransientTransactionError: with_transaction runs the whole transaction again
