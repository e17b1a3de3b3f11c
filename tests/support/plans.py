"""Reading query plans and joins: a recorded read as `explain` takes it, the stages of an
`explain` plan, the `$lookup` stages of a pipeline (nested ones included), and the fields that
lead a collection's indexes."""

from __future__ import annotations

from typing import Any

from billing.adapters import schema

Doc = dict[str, Any]
READS = ("find", "aggregate", "count", "distinct")
# Driver and transaction fields `explain` does not take.
NOT_EXPLAINED = {"lsid", "$clusterTime", "$db", "txnNumber", "startTransaction", "autocommit",
                 "readConcern", "$readPreference", "cursor", "batchSize"}


def explainable(name: str, command: Doc) -> Doc:
    """A read command as a listener saw it (`name` one of READS), ready for `explain`."""
    bare = {k: v for k, v in command.items() if k not in NOT_EXPLAINED}
    return {**bare, "cursor": {}} if name == "aggregate" else bare


def stages(plan: Any) -> list[str]:
    """Every stage name in an `explain` plan, however deeply nested."""
    if isinstance(plan, dict):
        own = [plan["stage"]] if isinstance(plan.get("stage"), str) else []
        return own + [s for v in plan.values() for s in stages(v)]
    if isinstance(plan, list):
        return [s for v in plan for s in stages(v)]
    return []


def lookups(pipeline: list[Doc]) -> list[Doc]:
    """Every `$lookup` of the pipeline, those nested in a lookup's own pipeline included."""
    found = []
    for stage in pipeline:
        if "$lookup" in stage:
            found.append(stage["$lookup"])
            found += lookups(stage["$lookup"].get("pipeline", []))
    return found


def leading_fields(collection: str) -> set[str]:
    """`_id` and the first field of each of the collection's indexes."""
    spec = next(c for c in schema.COLLECTIONS if c.name == collection)
    return {"_id"} | {index.keys[0][0] for index in spec.indexes}
