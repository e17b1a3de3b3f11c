"""Installing and checking the data contract: `setup`, `setup --check`, and the version gate.

`apply` creates what is missing (collections with their validators, indexes), updates validators
that differ, then runs the pending migrations in order, recording each; `check` reports the same
without writing. Both are idempotent and safe to run while billing runs elsewhere.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.errors import DuplicateKeyError, OperationFailure, PyMongoError

from billing._async.migrations import MIGRATIONS, VERSION
from billing.adapters import schema
from billing.adapters.mongo_errors import translate
from billing.errors import ConfigurationError, TransientDatabaseError
from billing.schema_report import SchemaReport, index_drift, validator_differs

_INDEX_CONFLICT = frozenset({85, 86})  # IndexOptionsConflict, IndexKeySpecsConflict
_NAMESPACE_EXISTS = 48
_DUPLICATE_KEY = 11000  # a unique index cannot be built over the stored documents
# A migration's record: `applying` while a setup runs it (claimed), then `applied`.
APPLYING, APPLIED = "applying", "applied"
CLAIM_WAIT_S = 120.0  # how long a setup waits for another one's migration
CLAIM_STALE = timedelta(hours=1)  # a claim this old is a dead setup's: taken over


async def version_of(db: Any) -> int:
    """The database's schema version: the highest migration it recorded (0: never set up)."""
    try:
        docs = await db[schema.SCHEMA_MIGRATIONS].find({}, {"_id": 1, "status": 1}).to_list()
    except PyMongoError as exc:
        raise translate(exc) from exc
    return max((d["_id"] for d in docs
                if isinstance(d["_id"], int) and d.get("status", APPLIED) == APPLIED), default=0)


async def check(db: Any) -> SchemaReport:
    """What `apply` would change; writes nothing."""
    try:
        return await _check(db)
    except PyMongoError as exc:
        raise translate(exc) from exc


async def _check(db: Any) -> SchemaReport:
    report = SchemaReport(version=await version_of(db), target=VERSION)
    cursor = await db.list_collections()
    options = {c["name"]: c.get("options", {}) for c in await cursor.to_list()}
    for spec in schema.COLLECTIONS:
        if spec.name not in options:
            report.changes.append(f"create collection {spec.name}" + (
                f" with indexes {', '.join(i.name for i in spec.indexes)}" if spec.indexes
                else ""))
            continue
        if validator_differs(spec, options[spec.name]):
            report.changes.append(f"update the validator of {spec.name}")
        for index, problem in index_drift(spec, await db[spec.name].index_information()):
            verb = "create" if problem == "missing" else "replace (drop it first: it differs)"
            report.changes.append(f"{verb} index {spec.name}.{index.name}")
    if report.version > VERSION:
        report.changes.append(
            f"the database is at schema version {report.version}, newer than this billing's "
            f"{VERSION}: upgrade billing")
    report.changes += [f"apply migration {m.version}: {m.name}"
                       for m in MIGRATIONS if m.version > report.version]
    return report


async def apply(db: Any, *, now: datetime | None = None) -> SchemaReport:
    """Bring the database to this code's schema version; what changed is in the report.

    Raises ConfigurationError when an index of the same name differs (drop it, then run setup
    again) or the database is at a newer version than this code knows."""
    try:
        return await _apply(db, now or datetime.now(UTC))
    except OperationFailure as exc:
        if exc.code in _INDEX_CONFLICT:
            raise ConfigurationError(
                f"an existing index conflicts with billing's data contract ({exc}): drop that "
                "index, then run setup again") from exc
        if exc.code == _DUPLICATE_KEY:
            raise ConfigurationError(
                f"stored documents break a unique index of billing's data contract ({exc}): "
                "for payment_methods, two live records of one Stripe method; mark all but "
                "one `detached`, then run setup again") from exc
        raise translate(exc) from exc
    except PyMongoError as exc:
        raise translate(exc) from exc


async def _apply(db: Any, now: datetime) -> SchemaReport:
    before = await _check(db)
    if before.version > VERSION:
        raise ConfigurationError(before.changes[-1] if before.changes else "newer schema")
    done = SchemaReport(version=before.version, target=VERSION, applied=True)
    existing = set(await db.list_collection_names())
    for spec in schema.COLLECTIONS:
        if spec.name not in existing:
            try:
                # Asked of the server alone: pymongo's own check first lists collections and
                # refuses one created since on the client's side, not as NamespaceExists.
                await db.create_collection(
                    spec.name, check_exists=False,
                    **({"validator": spec.validator} if spec.validator else {}))
                done.changes.append(f"created collection {spec.name}")
            except OperationFailure as exc:
                if exc.code != _NAMESPACE_EXISTS:  # created concurrently
                    raise
        elif f"update the validator of {spec.name}" in before.changes:
            await db.command("collMod", spec.name, validator=spec.validator)
            done.changes.append(f"updated the validator of {spec.name}")
        have = await db[spec.name].index_information()
        for index in spec.indexes:
            if index.name not in have:
                await db[spec.name].create_index(index.keys, **index.options())
                done.changes.append(f"created index {spec.name}.{index.name}")
            else:  # a different one raises IndexOptionsConflict / IndexKeySpecsConflict
                await db[spec.name].create_index(index.keys, **index.options())
    for migration in MIGRATIONS:
        if migration.version <= done.version:
            continue
        claimed = await _claim(db, migration.version, migration.name)
        if claimed is not None:
            changed = await migration.apply(db)
            await db[schema.SCHEMA_MIGRATIONS].update_one(
                {"_id": migration.version, "status": APPLYING, "claimed_at": claimed},
                {"$set": {"status": APPLIED, "applied_at": datetime.now(UTC),
                          "documents_changed": changed}, "$unset": {"claimed_at": ""}})
            done.changes.append(f"applied migration {migration.version}: {migration.name} "
                                f"({changed} document{'' if changed == 1 else 's'} changed)")
        done.version = migration.version
    return done


async def _claim(db: Any, version: int, name: str) -> datetime | None:
    """Claim a migration for this setup: the claim's time to apply it, None to skip it. A
    migration written for data of an older version must never run again over live data
    (another setup finished, a backend of this version now writes): a setup that finds it
    applied skips it, and one that finds it being applied waits for that. A claim older than
    CLAIM_STALE (migrations take seconds; its setup died) is taken over."""
    records = db[schema.SCHEMA_MIGRATIONS]
    mine = _now_ms()
    try:
        await records.insert_one({"_id": version, "name": name, "status": APPLYING,
                                  "claimed_at": mine})
        return mine
    except DuplicateKeyError:
        pass
    deadline = time.monotonic() + CLAIM_WAIT_S
    while True:
        doc = await records.find_one({"_id": version})
        if doc is None or doc.get("status", APPLIED) != APPLYING:
            return None  # applied by another setup (records before claims have no status)
        claimed = doc.get("claimed_at")
        claimed = claimed.replace(tzinfo=UTC) if isinstance(claimed, datetime) and \
            claimed.tzinfo is None else claimed
        if not isinstance(claimed, datetime) or claimed <= datetime.now(UTC) - CLAIM_STALE:
            mine = _now_ms()
            taken = await records.update_one({"_id": version, "status": APPLYING,
                                              "claimed_at": doc.get("claimed_at")},
                                             {"$set": {"claimed_at": mine}})
            if taken.modified_count:
                return mine  # its setup died mid-migration: migrations can be resumed
            continue
        if time.monotonic() >= deadline:
            raise TransientDatabaseError(
                f"another setup has been applying migration {version} ({name}) since "
                f"{claimed.isoformat()}: run setup again once it has finished (a claim left by "
                f"a setup that died is taken over {CLAIM_STALE} after it was made)")
        await asyncio.sleep(0.2)


def _now_ms() -> datetime:
    """Now, to the millisecond a BSON date holds (so a claim's time compares equal when read)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


async def require_current(db: Any) -> None:
    """ConfigurationError unless the database is at this code's schema version."""
    version = await version_of(db)
    if version == VERSION:
        return
    if version == 0:
        raise ConfigurationError(
            f"database {db.name!r} has no billing schema (never set up, or a misspelt database "
            "name): run setup first (the CLI: billing setup)")
    if version < VERSION:
        raise ConfigurationError(
            f"database {db.name!r} is at billing schema version {version}, this billing needs "
            f"{VERSION}: run setup to apply the migrations (the CLI: billing setup)")
    raise ConfigurationError(
        f"database {db.name!r} is at billing schema version {version}, newer than this "
        f"billing's {VERSION}: upgrade billing")


async def require_mongos(client: Any) -> None:
    """ConfigurationError unless the client talks to a mongos (sharding needs one)."""
    try:
        hello = await client.admin.command("hello")
    except PyMongoError as exc:
        raise translate(exc) from exc
    if hello.get("msg") != "isdbgrid":
        raise ConfigurationError(
            "sharding needs a sharded cluster: connect to a mongos (this server is not one; "
            "see docker-compose.sharded.yml); nothing was written")


async def shard(client: Any, db: Any) -> list[str]:
    """On a mongos: shard each tenant collection by its key in `schema.SHARD_KEYS`, once
    (a collection already sharded on that key is left alone; on another key,
    ConfigurationError). Run `apply` first: the shard keys need the collections' indexes."""
    await require_mongos(client)
    try:
        done: list[str] = []
        for name, key in schema.SHARD_KEYS.items():
            namespace = f"{db.name}.{name}"
            current = await client.config.collections.find_one({"_id": namespace})
            if current is not None and not current.get("dropped", False):
                if dict(current.get("key", {})) != key:
                    raise ConfigurationError(
                        f"{namespace} is sharded on {dict(current['key'])}, not {key}: billing "
                        "expects its documented shard key (docs/scaling.md)")
                continue
            await client.admin.command("shardCollection", namespace, key=key)
            done.append(f"sharded {name} on {key}")
        return done
    except PyMongoError as exc:
        raise translate(exc) from exc
