"""Query and pipeline builders: pure functions from ids and periods to MongoDB filters.

The chunk read and the chunk write use the same filter (`unbilled`), so within one snapshot they
select exactly the same conversations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId

from billing.adapters import schema
from billing.domain.models import ResumeKey
from billing.domain.periods import Period

Doc = dict[str, Any]

# `line_item_id` as the data contract allows it: null (or absent) until billed, then an ObjectId.
LINK_TYPES = ["null", "missing", "objectId"]

# A conversation billing can price: its `_id` and its org are ObjectIds (a chunk resumes after
# an (ended_at, _id) key, and MongoDB compares values of different types by type first, so one
# id of another type would fall outside every range), both ends are dates (not arrays
# holding dates: `{$type: "date"}` matches those, and `$lte` compares arrays), it does not end
# before it starts, and its link is one the contract allows (`line_item_id: null` also matches
# an array holding null, billed or not: never priced). BSON types by `$type` in `$expr`, which
# mongod and SecantusDB read alike.
WELL_FORMED: Doc = {"$expr": {"$and": [
    {"$eq": [{"$type": "$_id"}, "objectId"]},
    {"$eq": [{"$type": "$org_id"}, "objectId"]},
    {"$eq": [{"$type": "$started_at"}, "date"]},
    {"$eq": [{"$type": "$ended_at"}, "date"]},
    {"$lte": ["$started_at", "$ended_at"]},
    {"$in": [{"$type": "$line_item_id"}, LINK_TYPES]},
]}}


def well_formed(doc: Doc) -> bool:
    """WELL_FORMED in Python, for what pricing is given: dates, in order."""
    start, end = doc.get("started_at"), doc.get("ended_at")
    return isinstance(start, datetime) and isinstance(end, datetime) and start <= end


def conforms(doc: Doc) -> bool:
    """WELL_FORMED, all of it, in Python: the engine's verdict on a conversation read with
    its `_id`, `org_id`, `started_at`, `ended_at` and `line_item_id` (BSON decodes an ObjectId,
    a date and an array as ObjectId, datetime and list; billing's reads decode dates as aware UTC
    datetimes, and a date no datetime can hold fails the read, as it would anyway). Evaluating
    it here rather than in `$expr` keeps a per-conversation expression off the engine."""
    link = doc.get("line_item_id")
    return isinstance(doc.get("_id"), ObjectId) and isinstance(doc.get("org_id"), ObjectId) \
        and well_formed(doc) and (
        link is None or isinstance(link, ObjectId))


def unbilled(org_id: ObjectId, period: Period) -> Doc:
    """Unbilled conversations that ended in the period (ended_at is compared as a date)."""
    return {
        "org_id": org_id,
        "line_item_id": None,
        "ended_at": {"$gte": period.start, "$lt": period.end},
    }


MS = timedelta(milliseconds=1)  # BSON dates hold whole milliseconds
# A resume key's id that means "after every conversation ending at its time": the next stretch
# starts 1 ms later, a plain index range without the after-key `$or` (a quarter of a stretch's
# read on SecantusDB, which evaluates it per conversation).
MAX_ID = ObjectId("f" * 24)


@dataclass(frozen=True)
class Window:
    """The end times one chunk read covers, [start, end), and the key (ended_at, _id) it reads
    after: where the previous chunk stopped. Reading a stretch, not the rest of the period,
    keeps a chunk's cost flat on engines that fetch a whole index range before `$limit`."""

    start: datetime
    end: datetime
    after: tuple[datetime, ObjectId] | None = None

    @classmethod
    def of(cls, period: Period, resume: ResumeKey | None) -> Window:
        if resume is None:
            return cls(period.start, period.end)
        span = resume.span_ms * MS
        if resume.id == str(MAX_ID):  # after every conversation ending at the key's time
            start, after = resume.ended_at + MS, None
        else:  # after one conversation of a run of equal end times
            start, after = resume.ended_at, (resume.ended_at, ObjectId(resume.id))
        end = start + span
        # Within a quarter stretch of the end: read to the end rather than leave a sliver
        # (a transaction of its own); a stretch holds about 1.25 chunks, so what is left after
        # a stretch ending earlier fills most of a chunk.
        end = period.end if end + span // 4 >= period.end else end
        return cls(start, end, after)

    def more_after(self, period: Period, chunk: Sequence[Doc], limit: int) -> bool:
        """Whether conversations may remain after this chunk (read as `limit + 1`)."""
        return len(chunk) > limit or self.end < period.end

    def malformed_range(self, period: Period, chunk: Sequence[Doc], limit: int
                        ) -> tuple[datetime, datetime]:
        """End times whose malformed conversations this chunk counts: from where the previous
        chunk's count stopped to this chunk's end; the whole period on the last chunk."""
        if not self.more_after(period, chunk, limit):
            return period.start, period.end
        start = self.after[0] + MS if self.after is not None else self.start
        end = chunk[limit - 1]["ended_at"] + MS if len(chunk) > limit else self.end
        return start, min(end, period.end)


def after_key(ended_at: datetime, last_id: ObjectId) -> Doc:
    """After (ended_at, _id) in the billing index order, given ended_at >= that time."""
    return {"$or": [{"ended_at": {"$gt": ended_at}}, {"_id": {"$gt": last_id}}]}


def unbilled_between(org_id: ObjectId, period: Period, start: datetime, end: datetime) -> Doc:
    """`unbilled` narrowed to end times in [start, end)."""
    return {**unbilled(org_id, period), "ended_at": {"$gte": start, "$lt": end}}


def up_to(last_ended_at: datetime, last_id: ObjectId) -> Doc:
    """Everything at or before (ended_at, _id) in the billing index order."""
    return {"$or": [
        {"ended_at": {"$lt": last_ended_at}},
        {"ended_at": last_ended_at, "_id": {"$lte": last_id}},
    ]}


def invoice_key(org_id: ObjectId, period: Period, supplement: int) -> Doc:
    return {"org_id": org_id, "period_start": period.start, "period_end": period.end,
            "supplement": supplement}


def id_hint(filter: Doc) -> str | None:
    """"_id_" for a filter on one `_id` (or a list of them) plus tenant fields.

    mongod picks the `_id` index for these by itself; SecantusDB 0.7.0b3 scans the collection
    when another field joins `_id`, so the index is named."""
    value = filter.get("_id")
    if isinstance(value, ObjectId) or (isinstance(value, dict) and set(value) == {"$in"}):
        return "_id_"
    return None


def hinted(filter: Doc, hint: str | None = None) -> Doc:
    """The keyword arguments naming `hint`, or the `_id_` index where `id_hint` names it (none
    otherwise), for a read by `filter`."""
    chosen = hint or id_hint(filter)
    return {"hint": chosen} if chosen else {}


def pipeline_hint(pipeline: list[Doc]) -> str | None:
    first = pipeline[0].get("$match") if pipeline else None
    return id_hint(first) if isinstance(first, dict) else None


# `line_item_id` is an ObjectId or null: this matches the billed ones on the index (`$ne: null`
# makes SecantusDB scan the collection).
ANY_OBJECT_ID = {"$gte": ObjectId("0" * 24)}


# Conversations that break the data contract's types: `line_item_id` neither null nor an
# ObjectId, or `org_id` not one ObjectId (an array matches every org it holds). An `$expr`: no
# index bounds exist for "any type but these", so it filters an org's conversations.
BROKEN_CONTRACT: Doc = {"$or": [
    {"$not": [{"$in": [{"$type": "$line_item_id"}, LINK_TYPES]}]},
    {"$ne": [{"$type": "$org_id"}, "objectId"]},
]}

# `org_id` values that name no org and that an index range can find: strings (e.g. an org's id
# written as hex), numbers, NaN, null or no field at all. Each range is closed within its type:
# MongoDB brackets `$gte: ""` to strings by itself, but SecantusDB walks on to the index's end
# (every ObjectId key), so the upper bound keeps both engines to the type's own keys. NaN sorts
# below every number and equals only itself; an `$or` of the two would not use the index here.
LAST_STRING = "\U0010ffff" * 16  # above any string an org id could be written as
ORGLESS: tuple[tuple[str, Doc], ...] = (
    ("a string", {"org_id": {"$gte": "", "$lte": LAST_STRING}}),
    ("a number", {"org_id": {"$gte": float("-inf"), "$lte": float("inf")}}),
    ("NaN", {"org_id": float("nan")}),
    ("null or missing", {"org_id": None}),
)


def line_items_in_any_org(item_ids: list[ObjectId]) -> Doc:
    """Line items by `_id` in every org: the one read of tenant data not scoped to an org.

    Reconciliation needs it to tell a line item missing everywhere (its conversations may be
    released and billed again) from one that belongs to another org (a conversation's `org_id`
    was rewritten after billing, or is an array): releasing those would bill them twice."""
    return {"_id": {"$in": item_ids}}


def with_items(org_id: ObjectId) -> Doc:
    """$lookup stage attaching an invoice's line items (scoped to the org) as `items`.

    Joined on `org_id`, the prefix of the line items' index, then narrowed to the invoice:
    SecantusDB 0.7.0b3 answers a `$lookup` whose `foreignField` leads an index from that index,
    and reads the whole foreign collection for any other (`invoice_id` alone, or a pipeline
    with no `foreignField`), so a join on `invoice_id` cost time that grew with every invoice
    in the database (11 ms at 400 invoices, against 0.9 ms this way). mongod uses the index
    either way."""
    return {"$lookup": {
        "from": schema.LINE_ITEMS, "localField": "org_id", "foreignField": "org_id",
        "let": {"invoice": "$_id"},
        "pipeline": [{"$match": {"org_id": org_id,
                                 "$expr": {"$eq": ["$invoice_id", "$$invoice"]}}}],
        "as": "items",
    }}


# Malformed conversations a chunk's marking update excludes by id; with more, it filters by
# WELL_FORMED instead (exact too, but SecantusDB then scans the collection: mongod does not).
MAX_EXCLUDED = 1000


def chunk_marks(base: Doc, last: Doc, following: Doc | None, malformed: Doc | None,
                *, rejected: Sequence[Any] = (), first: Doc | None = None,
                after: tuple[datetime, ObjectId] | None = None) -> Doc:
    """The filter that matches exactly the chunk from `first` to `last` (`following` is the next
    well-formed conversation, if any; `after` the key the chunk was read after): unbilled, in
    that stretch of the index, well-formed, not `rejected` (conversations of the chunk that
    pricing refused: see `well_formed`).

    Index-only where it can be, because SecantusDB scans the collection for `$or` and `$expr`
    (mongod does not): when `following` ends later than `last` and `first` later than `after`,
    the chunk is every well-formed conversation that ended from `first`'s end to `last`'s, a
    plain range (`$lt` end + 1 ms: SecantusDB drops the boundary of `$lte` on a middle key of
    the index); malformed ones are excluded by id. A tie across either end of the chunk,
    rejected conversations, or more than MAX_EXCLUDED malformed ones take the exact
    `$or`/`$expr` filter."""
    last_end, last_id = last["ended_at"], last["_id"]
    keys = malformed.get("keys", []) if malformed else []
    tied = following is not None and following["ended_at"] == last_end
    tied_after = after is not None and first is not None and first["ended_at"] == after[0]
    if rejected or tied or tied_after or (malformed is not None and len(keys) < malformed["n"]):
        bounds = [up_to(last_end, last_id), *([after_key(*after)] if after else [])]
        exact = {**base, **WELL_FORMED, **(bounds[0] if len(bounds) == 1 else {"$and": bounds})}
        return {**exact, "_id": {"$nin": list(rejected)}} if rejected else exact
    lower = first["ended_at"] if first is not None else base["ended_at"]["$gte"]
    # A malformed end that is not one date (an array of them) may fall in any range: excluded.
    excluded = [k["i"] for k in keys
                if not isinstance(k.get("e"), datetime) or lower <= k["e"] <= last_end]
    upper = min(last_end + MS, base["ended_at"]["$lt"])
    if not excluded:
        return {**base, "ended_at": {"$gte": lower, "$lt": upper}}
    # Excluding ids, nor an array: one whose dates straddle the range matches it (MongoDB's
    # range on an array is met by any two of its elements) though no element lies in it, and
    # SecantusDB, which reads the chunk (and marks it, without `$nin`) on that index range,
    # never saw it, while with `$nin` it marks what its org's conversations match. Malformed
    # wherever it is.
    return {**base, "ended_at": {"$gte": lower, "$lt": upper, "$not": {"$type": "array"}},
            "_id": {"$nin": excluded}}


def period_usage(org_id: ObjectId, period: Period) -> list[Doc]:
    """The period's well-formed unbilled conversations counted, with their started minutes
    summed (as `ceil(ms / 60000)`, the pricing rule; a double, exact below 2^53 minutes)."""
    duration = {"$subtract": ["$ended_at", "$started_at"]}
    return [
        {"$match": unbilled(org_id, period)}, {"$match": WELL_FORMED},
        {"$group": {"_id": None, "n": {"$sum": 1},
                    "minutes": {"$sum": {"$ceil": {"$divide": [duration, 60_000]}}}}},
    ]


def usage_bound(org_id: ObjectId, period: Period) -> list[Doc]:
    """The period's unbilled conversations counted, with the earliest start (`lo`) and the
    latest end (`hi`) among them: what `plans.invoices.usage_bound` bounds the usage by.
    Counting and min/max only, no expression per conversation: a third of the cost of summing
    each one's minutes."""
    return [{"$match": unbilled(org_id, period)}, {"$group": BOUND_GROUP}]


BOUND_GROUP: Doc = {"_id": None, "n": {"$sum": 1}, "lo": {"$min": "$started_at"},
                    "hi": {"$max": "$ended_at"}}


def billing_snapshot(org_id: ObjectId, period: Period, *, supplement: int, limit: int) -> list[Doc]:
    """One aggregate on `orgs` returning the org, its invoice for the period with line items,
    the next `limit + 1` well-formed unbilled conversations, and the count of malformed ones
    with the keys (`i` id, `e` ended_at) of the first `MAX_EXCLUDED` of them."""
    return [*snapshot_head(org_id, period, supplement=supplement), *(
        {"$lookup": {"from": schema.CONVERSATIONS, "as": name, "pipeline": pipeline}}
        for name, pipeline in snapshot_conversations(org_id, period, limit=limit).items())]


def snapshot_head(org_id: ObjectId, period: Period, *, supplement: int) -> list[Doc]:
    """The org with its invoice for the period (and line items): `billing_snapshot` without
    the conversations, for engines that read those better on their own."""
    return [
        {"$match": {"_id": org_id}},
        # On `org_id`, which leads the invoices' indexes: see `with_items`.
        {"$lookup": {"from": schema.INVOICES, "localField": "_id", "foreignField": "org_id",
                     "as": "invoice", "pipeline": [
                         {"$match": invoice_key(org_id, period, supplement)},
                         with_items(org_id)]}},
    ]


def snapshot_conversations(org_id: ObjectId, period: Period, *, limit: int
                           ) -> dict[str, list[Doc]]:
    """Pipelines on `conversations` for the whole period: the next chunk, and the malformed
    ones of the period."""
    return {"chunk": chunk_read(org_id, period, Window.of(period, None), limit=limit),
            "malformed": malformed_read(org_id, period, period.start, period.end)}


def chunk_facet(org_id: ObjectId, period: Period, window: Window, *, limit: int,
                bound: bool, ordered: bool = True) -> list[Doc]:
    """A chunk's one read of conversations, for engines that read each conversation of an index
    range before `$limit` applies (SecantusDB): one pass returning as facets the first
    `head_size(limit)` unbilled conversations after the window's key in index order, as
    `head` (with the fields `conforms` judges: well-formedness is decided by the caller, not
    by an expression per conversation in the engine); with `bound`, for a fresh run's pass
    over the whole period, the `usage_bound` group of the conversations after the head
    (`bound`; `head_bound` adds the head's).

    Without `ordered`, the engine does not sort (its sort cost a fifth of a stretch's pass):
    the head is then the window's conversations in no order, every one of them only when there
    are fewer than `head_size(limit)` (see `split_head`).

    The pass covers the window, or the whole period when the window is the last stretch of a
    run: then `malformed` also counts, as `malformed_read` does, the malformed ones that ended
    before the window (or at its first millisecond), for the last chunk's count of the whole
    period; those of the window are the head's (`joined_malformed`). Judging the window's in
    the engine cost a third of the pass (an expression per conversation)."""
    start = period.start if window.end == period.end else window.start
    assert not bound or (window.after is None and start == window.start), "bound: whole pass"
    after = after_key(*window.after) if window.after is not None else {}
    narrow = [{"$match": {"ended_at": {"$gte": window.start, "$lt": window.end}, **after}}] \
        if after or start != window.start else []
    facets: Doc = {"head": [*narrow, {"$limit": head_size(limit)}, {"$replaceWith": HEAD}]}
    if start != window.start:
        # malformed_read's stages after its range (this pass's own $match), before the window
        facets["malformed"] = [{"$match": {"ended_at": {"$lt": window.start + MS}}},
                               *malformed_read(org_id, period, start, window.end)[1:]]
    if bound:
        facets["bound"] = [{"$skip": head_size(limit)}, {"$group": BOUND_GROUP}]
    return [
        {"$match": unbilled_between(org_id, period, start, window.end)},
        *([{"$sort": {"ended_at": 1, "_id": 1}}] if ordered else []),  # the index's order
        {"$facet": facets},
    ]


# The head's fields as an expression, not a `$project`: SecantusDB compiles a projection again
# for each document, which took a third of the pass (a field that is missing stays missing).
HEAD: Doc = {"_id": "$_id", "org_id": "$org_id", "started_at": "$started_at",
             "ended_at": "$ended_at", "line_item_id": "$line_item_id"}


def head_bound(good: list[Doc], rest: list[Doc]) -> Doc | None:
    """`usage_bound`'s group for a pass read by `chunk_facet` with `bound`: the head's
    well-formed conversations (`good`, as `split_head` returns them: malformed ones add no
    usage) joined with the engine's group of the conversations after the head (`rest`, empty
    when there were none). None: no conversation to bound. A rest whose `lo` or `hi` is not a
    date is returned as it is, so `plans.invoices.usage_bound` turns to the exact usage."""
    parts = list(rest[:1])
    if parts and not (isinstance(parts[0].get("lo"), datetime)
                      and isinstance(parts[0].get("hi"), datetime)):
        return parts[0]
    if good:
        parts.append({"n": len(good), "lo": min(d["started_at"] for d in good),
                      "hi": max(d["ended_at"] for d in good)})
    if not parts:
        return None
    return {"n": sum(p["n"] for p in parts), "lo": min(p["lo"] for p in parts),
            "hi": max(p["hi"] for p in parts)}


def head_size(limit: int) -> int:
    """How many conversations a chunk's pass looks at: the chunk, the next one, and room for
    MAX_EXCLUDED malformed ones among them."""
    return limit + 1 + MAX_EXCLUDED


def split_head(head: list[Doc], limit: int, *, ordered: bool = True
               ) -> tuple[list[Doc], list[Doc], bool]:
    """The well-formed conversations of a pass's head, in order (the chunk is the first
    `limit + 1` of them), the keys (`i`, `e`) of its malformed ones, and whether the head holds
    every conversation up to the chunk's end: True when the pass returned fewer than it could,
    or when its last one (well-formed, so its end is one date) ended after the chunk's last.
    False when more than MAX_EXCLUDED malformed ones crowd the head, or a run of equal end
    times crosses its end.

    A head read without `ordered` must hold fewer than `head_size(limit)`: the whole window,
    put in the index's order here (well-formed end times are dates, and ids unique)."""
    assert ordered or len(head) < head_size(limit), "an unordered head must be the whole window"
    ok = [conforms(d) for d in head]
    good = [{k: d[k] for k in ("_id", "started_at", "ended_at")}
            for d, fine in zip(head, ok, strict=True) if fine]
    bad = [{"i": d["_id"], "e": d.get("ended_at")} for d, fine in zip(head, ok, strict=True)
           if not fine]
    if len(head) < head_size(limit):
        if not ordered:
            good.sort(key=lambda d: (d["ended_at"], d["_id"]))
        return good, bad, True
    if len(good) <= limit:
        return good, bad, False
    last_end = good[limit - 1]["ended_at"]
    return good, bad, ok[-1] and head[-1]["ended_at"] > last_end


def joined_malformed(before: list[Doc], head: list[Doc]) -> list[Doc] | None:
    """The malformed conversations of a pass, shaped as `malformed_read` returns them: the keys
    of the head's (`head`, as `split_head` returns them) and, for a pass over the whole period,
    those `chunk_facet` found before the window (`before`; empty otherwise), each conversation
    once (one at the window's first millisecond is in both). None when the facet kept only some
    of its keys."""
    if before and len(before[0]["keys"]) < before[0]["n"]:
        return None
    keys = {k["i"]: k for k in [*(before[0]["keys"] if before else []), *head]}
    return [{"_id": None, "n": len(keys), "keys": list(keys.values())}] if keys else []


def malformed_within(found: list[Doc], start: datetime, end: datetime) -> list[Doc] | None:
    """Of the malformed conversations `chunk_facet` found, those that ended in [start, end),
    shaped as `malformed_read` returns them; an end that is not one date (an array of them)
    counts as within, as the marking filter excludes it wherever it is. None when the facet
    kept only some of their keys: the caller reads the range instead."""
    if not found:
        return []
    keys = found[0]["keys"]
    if len(keys) < found[0]["n"]:
        return None
    within = [k for k in keys if not isinstance(k.get("e"), datetime) or start <= k["e"] < end]
    return [{"_id": None, "n": len(within), "keys": within}] if within else []


def chunk_read(org_id: ObjectId, period: Period, window: Window, *, limit: int) -> list[Doc]:
    """The next `limit + 1` well-formed unbilled conversations in the window, in index order."""
    after = after_key(*window.after) if window.after is not None else {}
    return [
        # Two stages (mongod merges them): SecantusDB scans the collection for one $match
        # that mixes indexed fields with $expr or $or.
        {"$match": unbilled_between(org_id, period, window.start, window.end)},
        {"$match": {**WELL_FORMED, **after}},
        {"$sort": {"ended_at": 1, "_id": 1}},
        {"$limit": limit + 1},
        {"$project": {"started_at": 1, "ended_at": 1}},
    ]


def malformed_read(org_id: ObjectId, period: Period, start: datetime, end: datetime
                   ) -> list[Doc]:
    """The malformed unbilled conversations that ended in [start, end): their count and the
    keys (`i` id, `e` ended_at) of the first `MAX_EXCLUDED` of them."""
    return [
        {"$match": unbilled_between(org_id, period, start, end)},
        {"$match": {"$nor": [WELL_FORMED]}},
        # $group, not $count: SecantusDB 0.7.0b3 rejects $count inside $lookup.
        {"$group": {"_id": None, "n": {"$sum": 1},
                    "keys": {"$push": {"i": "$_id", "e": "$ended_at"}}}},
        {"$project": {"n": 1, "keys": {"$slice": ["$keys", MAX_EXCLUDED]}}},
    ]
