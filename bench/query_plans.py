"""Query plans: `explain` each query shape a run sent, and name the stages of the winning plan.

    rows = explain_all(db, samples)   # one command per shape, timed (bench/reconcile_child.py)

A COLLSCAN on a tenant collection is flagged. For such a query the index-eligible part of its
filter alone (equalities and ranges, without $expr, $type, $ne, $or...) is explained too: an
IXSCAN there means an index serves the query and the planner chose not to use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bson import ObjectId
from pymongo.database import Database
from pymongo.errors import OperationFailure

Doc = dict[str, Any]
WATCHED = {"conversations", "line_items", "payment_methods"}
RANGE = {"$eq", "$lt", "$lte", "$gt", "$gte", "$in"}


@dataclass
class Plan:
    command: str
    collection: str
    query: str  # the filter's shape, values left out
    stages: list[str]
    examined: str  # "docs examined / returned", when the engine says
    calls: int = 0  # how many times the run sent this shape, and the time they took
    median_ms: float = 0.0
    total_ms: float = 0.0
    prefix_stages: list[str] | None = None  # the index-eligible part alone, when it differs

    @property
    def flagged(self) -> bool:
        return self.collection in WATCHED and "COLLSCAN" in self.stages


def explain_all(db: Database[Doc], samples: list[Doc]) -> list[Plan]:
    """samples: [{command, calls, median_ms, total_ms}] (bench/reconcile_child.py)."""
    plans = []
    for sample in samples:
        command = sample["command"]
        name = next(iter(command))
        plans.append(_explain(db, command, name, brief_command(command)))
        plans[-1].calls, plans[-1].median_ms, plans[-1].total_ms = (
            sample["calls"], sample["median_ms"], sample["total_ms"])
        for inner in _lookups(command):  # what a $lookup runs per input document
            plans.append(_explain(db, inner, "find", f"$lookup's inner query: "
                                  f"{brief(inner['filter'])}"))
    return plans


def _explain(db: Database[Doc], command: Doc, name: str, query: str) -> Plan:
    collection = command[name]
    try:
        out = db.command("explain", command, verbosity="executionStats")
    except OperationFailure as exc:
        return Plan(name, collection, query, [f"explain failed: {exc.code}"], "")
    plan = Plan(name, collection, query, stages(out), _examined(out))
    if plan.flagged and (prefix := index_prefix(_filter(command))) != _filter(command):
        found = db.command("explain", {"find": collection, "filter": prefix},
                           verbosity="queryPlanner")
        plan.prefix_stages = stages(found)
    return plan


def stages(explained: Any) -> list[str]:
    """Stage names of every winning plan in an explain output, outermost first, no repeats."""
    names: list[str] = []

    def walk(node: Any, winning: bool) -> None:
        if isinstance(node, dict):
            if winning and isinstance(node.get("stage"), str):
                names.append(node["stage"])
            for key, value in node.items():
                if key != "rejectedPlans":
                    walk(value, winning or key == "winningPlan")
        elif isinstance(node, list):
            for value in node:
                walk(value, winning)

    walk(explained, False)
    return list(dict.fromkeys(names))


def _examined(explained: Any) -> str:
    if isinstance(explained, dict):
        stats = explained.get("executionStats")
        if isinstance(stats, dict) and "totalDocsExamined" in stats:
            return f"{stats['totalDocsExamined']:,} / {stats.get('nReturned', 0):,}"
        for value in explained.values():
            if found := _examined(value):
                return found
    elif isinstance(explained, list):
        for value in explained:
            if found := _examined(value):
                return found
    return ""


def _filter(command: Doc) -> Doc:
    if "pipeline" in command:
        first = command["pipeline"][0] if command["pipeline"] else {}
        return dict(first.get("$match", {}))
    return dict(command.get("filter") or command.get("query") or {})


def index_prefix(filt: Doc) -> Doc:
    """The fields of a filter any planner can turn into index bounds: equalities and ranges."""
    return {k: v for k, v in filt.items() if not k.startswith("$") and (
        not isinstance(v, dict) or set(v) <= RANGE)}


def _lookups(command: Doc) -> list[Doc]:
    inner = []
    for stage in command.get("pipeline", []):
        look = stage.get("$lookup")
        if look and "foreignField" in look:
            match: Doc = {}
            for step in look.get("pipeline", []):
                match.update(step.get("$match", {}))
            inner.append({"find": look["from"],
                          "filter": {**match, look["foreignField"]: ObjectId()}})
    return inner


def brief_command(command: Doc) -> str:
    name = next(iter(command))
    if name == "aggregate":
        return " → ".join(_stage(s) for s in command["pipeline"])
    if name == "distinct":
        return f"distinct {command['key']} {brief(command.get('query') or {})}"
    extra = "".join(f" {k} {brief(command[k]) if isinstance(command[k], dict) else command[k]}"
                    for k in ("sort", "limit") if k in command)
    return brief(command.get("filter") or {}) + extra


def _stage(stage: Doc) -> str:
    op, arg = next(iter(stage.items()))
    if op == "$match":
        return f"$match {brief(arg)}"
    if op == "$lookup":
        return f"$lookup {arg['from']}"
    return op


def brief(filt: Doc) -> str:
    """A filter without its values: {org_id, line_item_id $ne, $or[...]}."""
    parts = []
    for key, value in filt.items():
        if key in ("$or", "$nor", "$and"):
            parts.append(f"{key}[{'; '.join(brief(v) for v in value)}]")
        elif key.startswith("$"):
            parts.append(key)
        elif isinstance(value, dict) and value and all(k.startswith("$") for k in value):
            parts.append(f"{key} " + " ".join(
                f"{op}({brief(v)})" if isinstance(v, dict) else op for op, v in value.items()))
        elif value is None:
            parts.append(f"{key}: null")
        else:
            parts.append(key)
    return "{" + ", ".join(parts) + "}"
