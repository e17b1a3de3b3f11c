"""Bad input, everywhere: every public call and every CLI option, refused with a typed error and
nothing written.

The catalogue is data: each case is one call with one bad argument (the others valid), the
error class it must raise, and it is counted in the figures ("bad inputs tried", "writes caused
by bad input"). The database is dumped once before a group and compared after every call.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from bson import ObjectId

import billing.cli
from billing import AsyncBilling, Billing
from billing.domain.periods import Period, last_closed_month
from billing.errors import (
    BillingError,
    ConfigurationError,
    CurrencyMismatch,
    InvalidInput,
    InvalidMoney,
    InvalidPeriod,
    InvoiceNotEditable,
    InvoiceNotFound,
    InvoiceNotPayable,
    LineItemNotFound,
    NotFound,
    OrgNotFound,
    PaymentMethodNotFound,
    PeriodNotClosed,
    StateConflict,
    UnreadableDocument,
)
from billing.gateways import AsyncFakeGateway, FakeGateway
from billing.plans.webhooks import WebhookOutcome
from tests.support import figures
from tests.support.billing_data import OCT, OPEN, closed_month_invoice, dump, seed_conversations
from tests.support.isolation_world import WEBHOOK_SECRET, World, two_orgs, unknown_id
from tests.support.rejected_webhooks import rejected_deliveries

pytestmark = pytest.mark.integration

MB = "x" * 2**20
Call = Callable[[Any, World], Any]
Case = tuple[str, Call, "type[BillingError] | str"]
REJECTED = "rejected"  # webhooks answer with a result, not an exception

# ---- the values ------------------------------------------------------------------------------

# Ids that are not ids: each must be InvalidInput, never a query operator or a lookup.
MALFORMED_IDS: list[tuple[str, Any]] = [
    ("None", None), ("int", 123), ("float", 1.5), ("bool", True), ("empty", ""),
    ("short", "abc"), ("23 hex", "0" * 23), ("25 hex", "0" * 25), ("non-hex", "z" * 24),
    ("padded", " " + "0" * 23), ("1 MB", MB), ("$ne", {"$ne": None}), ("$gt", {"$gt": ""}),
    ("$in", {"$in": []}), ("list", ["0" * 24]), ("bytes", b"\x00" * 12), ("NUL", "\x00" * 24),
]
MONEY: list[tuple[str, Any]] = [
    ("float", 1.5), ("integral float", 50.0), ("nan", math.nan), ("inf", math.inf),
    ("-inf", -math.inf), ("True", True), ("False", False), ("-1", -1), ("-2**63", -2**63),
    ("2**63", 2**63), ("2**64", 2**64), ("10**30", 10**30), ("str", "50"), ("None", None),
    ("Decimal", Decimal("50")), ("list", [50]), ("$gt", {"$gt": 0}),
]
CURRENCIES: list[tuple[str, Any]] = [
    ("empty", ""), ("2 letters", "us"), ("unknown", "xxx"), ("trailing space", "usd "),
    ("word", "dollars"), ("fullwidth", "\uff35\uff33\uff24"), ("int", 840), ("list", ["usd"]),
    ("$ne", {"$ne": None}), ("1 MB", MB), ("lone surrogate", "\ud800"),
]
# Python strings that are not Unicode text: MongoDB stores UTF-8, which cannot encode them.
LONE_SURROGATES: list[tuple[str, Any]] = [
    ("lone surrogate", "\ud800"), ("low surrogate inside", "ab\udfffc"),
    ("surrogateescape byte", "pm_\udcff"),
]
TEXTS: list[tuple[str, Any]] = [
    ("empty", ""), ("blank", "   "), ("int", 1), ("list", ["x"]), ("$ne", {"$ne": None}),
    ("1 MB", MB), ("NUL", "a\x00b"), ("bytes", b"x"), *LONE_SURROGATES,
]
NAIVE = datetime(2026, 10, 1)
DATES: list[tuple[str, Any]] = [
    ("None", None), ("iso string", "2026-10-01T00:00:00Z"), ("epoch int", 1_790_000_000),
    ("naive", NAIVE), ("date", date(2026, 10, 1)), ("$gt", {"$gt": ""}),
    ("out of UTC range", datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1)))),
]
PERIODS: list[tuple[str, Any, Any, type[BillingError]]] = [
    *[(f"start {label}", value, OCT[1], InvalidPeriod) for label, value in DATES],
    *[(f"end {label}", OCT[0], value, InvalidPeriod) for label, value in DATES],
    ("end == start", OCT[0], OCT[0], InvalidPeriod),
    ("end before start", OCT[1], OCT[0], InvalidPeriod),
    ("open period", *OPEN, PeriodNotClosed),
    ("far future", datetime(2026, 10, 1, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC),
     PeriodNotClosed),
]


def _ids(valid: Callable[[World], str], other: Callable[[World], str] | None,
         missing: type[BillingError], *, optional: bool = False
         ) -> list[tuple[str, Callable[[World], Any], type[BillingError]]]:
    """Bad values for one id parameter: malformed (InvalidInput), unknown and, for objects that
    belong to an org, the other org's (`missing`, a NotFound). None is valid for `optional`
    ones (e.g. `org_id=None`: every org)."""
    out: list[tuple[str, Callable[[World], Any], type[BillingError]]] = [
        (label, (lambda _w, v=value: v), InvalidInput) for label, value in MALFORMED_IDS
        if not (optional and value is None)]
    out.append(("unknown", lambda _w: unknown_id(), missing))
    out.append(("valid one reversed", lambda w: valid(w)[::-1], missing))
    if other is not None:
        out.append(("other org's", other, missing))
    return out


# ---- the catalogue ---------------------------------------------------------------------------


def catalogue() -> list[Case]:
    cases: list[Case] = []

    def add(label: str, call: Call, expected: type[BillingError] | str) -> None:
        cases.append((label, call, expected))

    org_ids = _ids(lambda w: w.a.org, None, OrgNotFound)

    # orgs
    for label, value in TEXTS:
        add(f"orgs.create name={label}", lambda b, w, v=value: b.orgs.create(
            name=v, currency="usd", per_conversation=1, per_started_minute=1), InvalidInput)
    for label, value in CURRENCIES:
        add(f"orgs.create currency={label}", lambda b, w, v=value: b.orgs.create(
            name="N", currency=v, per_conversation=1, per_started_minute=1), InvalidMoney)
    for field in ("per_conversation", "per_started_minute"):
        for label, value in MONEY:
            prices = {"per_conversation": 1, "per_started_minute": 1, field: value}
            add(f"orgs.create {field}={label}", lambda b, w, p=prices: b.orgs.create(
                name="N", currency="usd", **p), InvalidMoney)
    for label, get, exc in org_ids:
        add(f"orgs.get org={label}", lambda b, w, g=get: b.orgs.get(g(w)), exc)

    # conversations
    def record(b: Any, w: World, **kw: Any) -> Any:
        args: dict[str, Any] = {"org_id": w.a.org, "started_at": OCT[0],
                                "ended_at": OCT[0] + timedelta(minutes=3), **kw}
        return b.conversations.record(args.pop("org_id"), **args)

    for label, get, exc in org_ids:
        add(f"conversations.record org={label}", lambda b, w, g=get: record(b, w, org_id=g(w)),
            exc)
    for field in ("started_at", "ended_at"):
        for label, value in DATES:
            add(f"conversations.record {field}={label}",
                lambda b, w, f=field, v=value: record(b, w, **{f: v}), InvalidPeriod)
    add("conversations.record ended before started",
        lambda b, w: record(b, w, started_at=OCT[1], ended_at=OCT[0]), InvalidInput)
    for label, value in TEXTS:
        add(f"conversations.record external_id={label}",
            lambda b, w, v=value: record(b, w, external_id=v), InvalidInput)
    add("conversations.record external_id reused with other times",
        lambda b, w: record(b, w, external_id=w.a.external_id), StateConflict)
    for label, get, exc in _ids(lambda w: w.a.conversation, lambda w: w.b.conversation,
                                NotFound):
        add(f"conversations.get conversation={label}",
            lambda b, w, g=get: b.conversations.get(w.a.org, g(w)), exc)

    # invoices: create_for_period, run_period
    for label, get, exc in org_ids:
        add(f"invoices.create_for_period org={label}",
            lambda b, w, g=get: b.invoices.create_for_period(g(w), *OCT), exc)
    for label, start, end, exc in PERIODS:
        add(f"invoices.create_for_period {label}", lambda b, w, s=start, e=end:
            b.invoices.create_for_period(w.a.org, s, e), exc)
    for label, start, end, exc in PERIODS:
        add(f"invoices.run_period {label}", lambda b, w, s=start, e=end:
            b.invoices.run_period(Period(s, e)), exc)
    for label, get, exc in _ids(lambda w: w.a.org, None, OrgNotFound, optional=True):
        add(f"invoices.run_period org={label}", lambda b, w, g=get:
            b.invoices.run_period(Period(*OCT), org_id=g(w)), exc)

    # invoices: bill_late_usage and late_usage (what it would bill)
    for method in ("bill_late_usage", "late_usage"):
        for label, get, exc in org_ids:
            add(f"invoices.{method} org={label}", lambda b, w, m=method, g=get:
                getattr(b.invoices, m)(g(w), Period(*OCT)), exc)
        for label, start, end, exc in PERIODS:
            add(f"invoices.{method} {label}", lambda b, w, m=method, s=start, e=end:
                getattr(b.invoices, m)(w.a.org, Period(s, e)), exc)

    # invoices: get, finalize, void, pay; org and invoice ids
    for method in ("get", "finalize", "void", "pay", "payment_attempts"):
        for label, get, exc in _ids(lambda w: w.a.org, None, NotFound):
            add(f"invoices.{method} org={label}", lambda b, w, m=method, g=get:
                getattr(b.invoices, m)(g(w), w.a.draft), exc)
        for label, get, exc in _ids(lambda w: w.a.draft, lambda w: w.b.draft, InvoiceNotFound):
            add(f"invoices.{method} invoice={label}", lambda b, w, m=method, g=get:
                getattr(b.invoices, m)(w.a.org, g(w)), exc)
        add(f"invoices.{method} invoice=other org's open one", lambda b, w, m=method:
            getattr(b.invoices, m)(w.a.org, w.b.open_invoice), InvoiceNotFound)
    add("invoices.pay a draft", lambda b, w: b.invoices.pay(w.a.org, w.a.draft),
        InvoiceNotPayable)

    # line items
    def add_item(b: Any, w: World, **kw: Any) -> Any:
        args: dict[str, Any] = {"org_id": w.a.org, "invoice_id": w.a.draft,
                                "description": "Fee", "quantity": 1, "unit_amount": 100, **kw}
        return b.line_items.add(args.pop("org_id"), args.pop("invoice_id"), **args)

    for label, get, exc in _ids(lambda w: w.a.org, None, NotFound):
        add(f"line_items.add org={label}", lambda b, w, g=get: add_item(b, w, org_id=g(w)), exc)
    for label, get, exc in _ids(lambda w: w.a.draft, lambda w: w.b.draft, InvoiceNotFound):
        add(f"line_items.add invoice={label}",
            lambda b, w, g=get: add_item(b, w, invoice_id=g(w)), exc)
    for label, value in TEXTS:
        add(f"line_items.add description={label}",
            lambda b, w, v=value: add_item(b, w, description=v), InvalidInput)
    for field in ("quantity", "unit_amount"):
        for label, value in MONEY:
            add(f"line_items.add {field}={label}",
                lambda b, w, f=field, v=value: add_item(b, w, **{f: v}), InvalidMoney)
    for label, value in CURRENCIES:
        add(f"line_items.add currency={label}",
            lambda b, w, v=value: add_item(b, w, currency=v), InvalidMoney)
    add("line_items.add quantity x unit_amount beyond int64",
        lambda b, w: add_item(b, w, quantity=2**62, unit_amount=4), InvalidMoney)
    add("line_items.add total beyond int64",
        lambda b, w: add_item(b, w, unit_amount=2**63 - 1), InvalidMoney)
    add("line_items.add another currency",
        lambda b, w: add_item(b, w, currency="eur"), CurrencyMismatch)
    add("line_items.add to an open invoice",
        lambda b, w: add_item(b, w, invoice_id=w.a.open_invoice), InvoiceNotEditable)

    def remove(b: Any, w: World, **kw: Any) -> Any:
        args = {"org_id": w.a.org, "invoice_id": w.a.draft, "line_item_id": w.a.manual_item,
                **kw}
        return b.line_items.remove(args["org_id"], args["invoice_id"], args["line_item_id"])

    for label, get, exc in _ids(lambda w: w.a.org, None, NotFound):
        add(f"line_items.remove org={label}", lambda b, w, g=get: remove(b, w, org_id=g(w)),
            exc)
    for label, get, exc in _ids(lambda w: w.a.draft, lambda w: w.b.draft, InvoiceNotFound):
        add(f"line_items.remove invoice={label}",
            lambda b, w, g=get: remove(b, w, invoice_id=g(w)), exc)
    for label, get, exc in _ids(lambda w: w.a.manual_item, lambda w: w.b.manual_item,
                                LineItemNotFound):
        add(f"line_items.remove line_item={label}",
            lambda b, w, g=get: remove(b, w, line_item_id=g(w)), exc)
    add("line_items.remove the usage line item",
        lambda b, w: remove(b, w, line_item_id=w.a.usage_item), InvoiceNotEditable)

    # payment methods
    for label, get, exc in org_ids:
        add(f"payment_methods.attach org={label}", lambda b, w, g=get:
            b.payment_methods.attach(g(w), "pm_card_visa", request_id="r-bad"), exc)
    for label, value in [*TEXTS, ("256 chars", "pm_" + "x" * 253)]:
        add(f"payment_methods.attach method={label}", lambda b, w, v=value:
            b.payment_methods.attach(w.a.org, v, request_id="r-bad"), InvalidInput)
        add(f"payment_methods.attach request_id={label}", lambda b, w, v=value:
            b.payment_methods.attach(w.a.org, "pm_card_visa", request_id=v), InvalidInput)
    for method in ("detach", "set_default"):
        for label, get, exc in _ids(lambda w: w.a.org, None, NotFound):
            add(f"payment_methods.{method} org={label}", lambda b, w, m=method, g=get:
                getattr(b.payment_methods, m)(g(w), w.a.method), exc)
        for label, get, exc in _ids(lambda w: w.a.method, lambda w: w.b.method,
                                    PaymentMethodNotFound):
            add(f"payment_methods.{method} method={label}", lambda b, w, m=method, g=get:
                getattr(b.payment_methods, m)(w.a.org, g(w)), exc)
    for label, value in MALFORMED_IDS:
        add(f"payment_methods.list org={label}",
            lambda b, w, v=value: b.payment_methods.list(v), InvalidInput)

    # webhooks: a rejected outcome (400), not an exception
    for label, make in rejected_deliveries():
        add(f"webhooks.handle {label}",
            lambda b, w, mk=make: b.webhooks.handle(*mk()), REJECTED)

    # reconciliation (dry run and apply: neither may take a lease or write an audit record)
    for apply in (False, True):
        mode = "apply" if apply else "dry run"
        for label, get, exc in _ids(lambda w: w.a.org, None, OrgNotFound, optional=True):
            add(f"reconciliation.run {mode} org={label}", lambda b, w, g=get, a=apply:
                b.reconciliation.run(apply=a, org_id=g(w)), exc)
        for label, checks in [("unknown", ["bogus"]), ("empty", []), ("$ne", [{"$ne": None}]),
                              ("1 MB", [MB]), ("string", "bogus"), ("None in list", [None])]:
            add(f"reconciliation.run {mode} checks={label}", lambda b, w, c=checks, a=apply:
                b.reconciliation.run(apply=a, checks=c), InvalidInput)
        for label, shard in [("5/4", "5/4"), ("0/0", "0/0"), ("-1/2", "-1/2"), ("a/b", "a/b"),
                             ("1", "1"), ("empty", ""), ("0/4097", "0/4097"),
                             ("0/1/2", "0/1/2"), ("huge", f"{2**64}/1"),
                             ("(4, 4)", (4, 4)), ("(-1, 2)", (-1, 2)), ("(0, 0)", (0, 0)),
                             ("('a', 'b')", ("a", "b")), ("(0.5, 2)", (0.5, 2))]:
            add(f"reconciliation.run {mode} shard={label}", lambda b, w, s=shard, a=apply:
                b.reconciliation.run(apply=a, shard=s), InvalidInput)
        for label, kw in [("lease_seconds=0", {"lease_seconds": 0}),
                          ("lease_seconds=-1", {"lease_seconds": -1}),
                          ("stale_after<0", {"stale_after": timedelta(seconds=-1)})]:
            add(f"reconciliation.run {mode} {label}", lambda b, w, k=kw, a=apply:
                b.reconciliation.run(apply=a, **k), InvalidInput)
    return cases


CATALOGUE = catalogue()


# ---- running it ------------------------------------------------------------------------------


@pytest.fixture
def world_billing(client: Any, db_name: str, stripe_gateway: Any) -> Billing:
    b = Billing(client, database=db_name, gateway=stripe_gateway, webhook_secret=WEBHOOK_SECRET,
                transaction_retry_seconds=60)
    b.setup()
    return b


def check(label: str, expected: type[BillingError] | str, outcome: Any) -> str | None:
    """None if `outcome` (the exception raised, or the value returned) is the expected refusal,
    else what is wrong with it."""
    if expected == REJECTED:
        ok = (getattr(outcome, "outcome", None) is WebhookOutcome.REJECTED
              and outcome.http_status == 400 and outcome.detail.strip())
        return None if ok else f"{label}: expected a rejected webhook, got {outcome!r:.200}"
    assert not isinstance(expected, str)
    if not isinstance(outcome, BaseException):
        return f"{label}: returned {outcome!r:.200} instead of raising {expected.__name__}"
    if not isinstance(outcome, expected):
        return f"{label}: raised {type(outcome).__name__}: {outcome!s:.200} " \
               f"instead of {expected.__name__}"
    if not (str(outcome).strip() and outcome.message.strip()):
        return f"{label}: {type(outcome).__name__} with an empty message"
    return None


def run_catalogue(b: Billing, w: World, cases: list[Case]) -> list[str]:
    """Runs every case, comparing the database with its state before after each one."""
    before = dump(b.database)
    problems: list[str] = []
    for label, fn, expected in cases:
        try:
            outcome = fn(b, w)
        except Exception as exc:  # noqa: BLE001 - judged by check()
            outcome = exc
        figures.add("bad inputs tried", 1)
        if problem := check(label, expected, outcome):
            problems.append(problem)
        after = dump(b.database)
        changed = after != before
        figures.add("writes caused by bad input", int(changed))
        if changed:
            problems.append(f"{label}: the database changed")
            before = after
    return problems


def test_every_public_call_refuses_bad_input_and_writes_nothing(world_billing: Billing) -> None:
    w = two_orgs(world_billing)

    problems = run_catalogue(world_billing, w, CATALOGUE)

    assert not problems, "\n".join(problems)
    assert len(CATALOGUE) > 400  # the catalogue is real, not a handful


async def test_a_sample_through_async_billing_refuses_bad_input_and_writes_nothing(
    world_billing: Billing, async_client: Any, db_name: str, async_stripe_gateway: Any
) -> None:
    w = two_orgs(world_billing)
    ab = AsyncBilling(async_client, database=db_name, gateway=async_stripe_gateway,
                      webhook_secret=WEBHOOK_SECRET, transaction_retry_seconds=60)
    sample = CATALOGUE[::5]
    before = dump(world_billing.database)
    problems: list[str] = []
    for label, fn, expected in sample:
        try:
            outcome = fn(ab, w)
            if inspect.isawaitable(outcome):
                outcome = await outcome
        except Exception as exc:  # noqa: BLE001 - judged by check()
            outcome = exc
        figures.add("bad inputs tried", 1)
        if problem := check(f"async {label}", expected, outcome):
            problems.append(problem)
        changed = dump(world_billing.database) != before
        figures.add("writes caused by bad input", int(changed))
        if changed:
            problems.append(f"async {label}: the database changed")
            before = dump(world_billing.database)

    assert not problems, "\n".join(problems)
    assert len(sample) > 80


# ---- options of the wrong type (bugs found by this suite, fixed) ------------------------------

UNTYPED: list[tuple[str, Call]] = [
    ("invoices.run_period(period='2026-10')",
     lambda b, w: b.invoices.run_period("2026-10")),
    ("invoices.run_period(period=None)", lambda b, w: b.invoices.run_period(None)),
    ("invoices.bill_late_usage(period='2026-10')",
     lambda b, w: b.invoices.bill_late_usage(str(ObjectId()), "2026-10")),
    ("invoices.late_usage(period=None)",
     lambda b, w: b.invoices.late_usage(str(ObjectId()), None)),
    ("reconciliation.run(checks=5)", lambda b, w: b.reconciliation.run(checks=5)),
    ("reconciliation.run(shard=None)", lambda b, w: b.reconciliation.run(shard=None)),
    ("reconciliation.run(shard=5)", lambda b, w: b.reconciliation.run(shard=5)),
    ("reconciliation.run(shard=(0,))", lambda b, w: b.reconciliation.run(shard=(0,))),
    ("reconciliation.run(lease_seconds='x')",
     lambda b, w: b.reconciliation.run(lease_seconds="x")),
    ("reconciliation.run(apply=True, lease_seconds=nan)",
     lambda b, w: b.reconciliation.run(apply=True, lease_seconds=math.nan)),
    ("reconciliation.run(stale_after='x')",
     lambda b, w: b.reconciliation.run(stale_after="x")),
    ("events.poll(after=2**63)",
     lambda b, w: b.events.poll(str(ObjectId()), after=2**63)),
    ("webhooks.handle(header={'t': 1})", lambda b, w: b.webhooks.handle(b"{}", {"t": 1})),
    ("webhooks.handle(header=5)", lambda b, w: b.webhooks.handle(b"{}", 5)),
]


@pytest.mark.parametrize("label,call", UNTYPED, ids=[u[0] for u in UNTYPED])
def test_wrong_types_of_options_raise_typed_errors(
    client: Any, db_name: str, label: str, call: Call
) -> None:
    b = Billing(client, database=db_name, webhook_secret=WEBHOOK_SECRET)
    b.setup()
    b.orgs.create(name="A", currency="usd", per_conversation=1, per_started_minute=1)
    before = dump(b.database)
    figures.add("bad inputs tried", 1)

    try:
        outcome: Any = call(b, None)  # type: ignore[arg-type]
    except Exception as exc:  # noqa: BLE001 - judged below
        outcome = exc

    changed = dump(b.database) != before
    figures.add("writes caused by bad input", int(changed))
    assert not changed
    if label.startswith("webhooks"):
        assert check(label, REJECTED, outcome) is None
    else:
        assert check(label, InvalidInput, outcome) is None


# ---- flags and callbacks of the wrong type: refused before anything is read or written -------
# A truthy string such as "false" (e.g. apply=os.environ["APPLY"]) must not charge, repair or
# finalise; a progress that cannot be called must not fail after the first org committed.


def _due_world(client: Any, db_name: str) -> tuple[Billing, FakeGateway, str, str]:
    """An org with a closed month to bill (a reconciliation finding, an invoice run's work),
    and an open invoice due for collection on its default card: every run below would act."""
    fake = FakeGateway()
    b = Billing(client, database=db_name, gateway=fake)
    b.setup()
    org, inv = closed_month_invoice(b, name="A", conversations=3, token="pm_card_visa")
    month = last_closed_month()
    seed_conversations(b.database, org.id, 2, start=month.start - timedelta(days=40))
    return b, fake, org.id, inv.id


FLAGS: list[tuple[str, str, Callable[[Billing, str], Any]]] = [
    ("collections.run(apply='false')", "apply",
     lambda b, org: b.collections.run(apply="false")),
    ("collections.run(apply=1)", "apply", lambda b, org: b.collections.run(apply=1)),
    ("reconciliation.run(apply='false')", "apply",
     lambda b, org: b.reconciliation.run(apply="false")),
    ("reconciliation.run(apply=None)", "apply", lambda b, org: b.reconciliation.run(apply=None)),
    ("invoices.create_for_period(finalize='false')", "finalize",
     lambda b, org: b.invoices.create_for_period(
         org, last_closed_month().start - timedelta(days=40), last_closed_month().start,
         finalize="false")),
    ("payment_methods.attach(make_default='false')", "make_default",
     lambda b, org: b.payment_methods.attach(org, "pm_card_mastercard", request_id="r-2",
                                             make_default="false")),
    ("invoices.run_period(progress=5)", "progress",
     lambda b, org: b.invoices.run_period(last_closed_month(), progress=5)),
    ("reconciliation.run(apply=True, progress=5)", "progress",
     lambda b, org: b.reconciliation.run(apply=True, progress=5)),
    ("collections.run(apply=True, progress='bar')", "progress",
     lambda b, org: b.collections.run(apply=True, progress="bar")),
]


@pytest.mark.parametrize("label,name,call", FLAGS, ids=[f[0] for f in FLAGS])
def test_a_flag_or_progress_of_the_wrong_type_is_refused_and_nothing_acts(
    client: Any, db_name: str, label: str, name: str, call: Callable[[Billing, str], Any]
) -> None:
    b, fake, org, inv = _due_world(client, db_name)
    before = dump(b.database)
    figures.add("bad inputs tried", 1)

    with pytest.raises(InvalidInput) as caught:
        call(b, org)

    assert f"{name} must be" in caught.value.message, caught.value.message
    changed = dump(b.database) != before
    figures.add("writes caused by bad input", int(changed))
    assert not changed
    assert fake.taken(inv) == 0 and len(fake.charges) == 0


def test_attach_without_a_gateway_writes_nothing(client: Any, db_name: str) -> None:
    b = Billing(client, database=db_name)
    b.setup()
    org = b.orgs.create(name="A", currency="usd", per_conversation=1, per_started_minute=1)
    before = dump(b.database)

    with pytest.raises(BillingError):
        b.payment_methods.attach(org.id, "pm_card_visa", request_id="r-1")

    assert dump(b.database) == before


def test_upper_case_currency_is_normalised_not_refused(billing: Billing) -> None:
    # Documented: "ISO 4217 currency (lower case)"; money.currency lower-cases what it accepts.
    org = billing.orgs.create(name="N", currency="USD", per_conversation=1, per_started_minute=1)

    assert org.currency == "usd"
    assert billing.database.orgs.find_one({"_id": ObjectId(org.id)})["currency"] == "usd"


# ---- the CLI ---------------------------------------------------------------------------------

OPEN_MONTH = last_closed_month().end.strftime("%Y-%m")
CLOSED = last_closed_month().label
BAD_ORGS = ["abc", "z" * 24, '{"$ne": null}', '{"$gt": ""}', "", MB, "0" * 25]


def cli_cases() -> list[list[str]]:
    """Argument lists after `--uri U --database D` (None-free; `{db}` is the test database)."""
    run = ["invoice", "run"]
    cases: list[list[str]] = [
        [], ["bogus"], ["--bogus"], ["invoice"], ["invoice", "bogus"], run,
        [*run, "--period"], [*run, "--period", CLOSED, "--bogus"],
        [*run, "--period", CLOSED, "stray"], [*run, "--period", CLOSED, "--org"],
        ["demo", "--bogus"], ["demo", "stray"], ["reconcile", "--bogus"],
        ["reconcile", "--apply", "yes"], ["reconcile", "--check"],
    ]
    for period in ["2026-13", "2026-00", "1969-12", "26-10", "", "2026-10-01", "2026/10",
                   "9999-12", OPEN_MONTH, '{"$ne": null}', MB, " 2026-10", "２０２６-10"]:
        cases.append([*run, "--period", period])
    late = ["invoice", "bill-late"]
    cases += [late, [*late, "--org", str(ObjectId())], [*late, "--period", CLOSED],
              ["invoice", "show"], ["invoice", "show", str(ObjectId())],
              ["invoice", "show", str(ObjectId()), str(ObjectId()), "stray"]]
    for period in ["2026-13", "", OPEN_MONTH, '{"$ne": null}', MB]:
        cases.append([*late, "--org", str(ObjectId()), "--period", period])
        cases.append([*late, "--org", str(ObjectId()), "--period", period, "--apply"])
    for org in [*BAD_ORGS, str(ObjectId())]:
        cases.append([*run, "--period", CLOSED, "--org", org])
        cases.append([*late, "--org", org, "--period", CLOSED])
        cases.append([*late, "--org", org, "--period", CLOSED, "--apply"])
        cases.append(["invoice", "show", org, str(ObjectId())])
        cases.append(["invoice", "show", str(ObjectId()), org])
        cases.append(["reconcile", "--org", org])
        cases.append(["reconcile", "--apply", "--org", org])
    for check_ in ["bogus", "", "UNBILLED", '{"$ne": null}']:
        cases.append(["reconcile", "--check", check_])
    for shard in ["5/4", "4/4", "0/0", "-1/2", "a/b", "1", "", "0/4097", "0/1/2", f"{2**64}/1",
                  "1/2/", MB]:
        cases.append(["reconcile", "--shard", shard])
        cases.append(["reconcile", "--apply", "--shard", shard])
    for database in ["a/b", "a.b", "a b", "a$b", "x" * 64, "\x00", ""]:
        cases.append(["--database", database, *run, "--period", CLOSED])
        cases.append([*run, "--period", CLOSED, "--database", database])
    # Bytes that are not UTF-8 reach argv as lone surrogates (surrogateescape).
    for bad in ["a\udcffb", "\udcff" * 24]:
        cases.append(["--database", bad, *run, "--period", CLOSED])
        cases.append([*run, "--period", CLOSED, "--org", bad])
        cases.append(["invoice", "show", bad, str(ObjectId())])
        cases.append(["invoice", "bill-late", "--org", bad, "--period", CLOSED])
        cases.append(["reconcile", "--org", bad])
        cases.append([*run, "--period", bad])
        cases.append(["reconcile", "--shard", bad])
        cases.append(["reconcile", "--check", bad])
    # Beyond int64, and beyond the digits int() parses: refused, not an OverflowError/ValueError.
    cases.append(["events", "tail", "--org", str(ObjectId()), "--after", str(2**63)])
    credit = ["credit-note", "create", str(ObjectId()), str(ObjectId()), "--reason", "duplicate",
              "--request-id", "r-1", "--apply"]
    for amount in ["5" * 5000, "0" * 5000 + "5", str(2**63), "9" * 20]:
        cases.append([*credit, "--amount", amount])
        cases.append([*credit, "--line", f"{ObjectId()}={amount}"])
    cases.append(["demo", "--database", "{db}"])  # the demo refuses a database it did not write
    return cases


CLI_CASES = cli_cases()


@pytest.fixture
def no_cli_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("MONGODB_URI", "STRIPE_API_KEY", "STRIPE_API_BASE", "BILLING_FAULTS"):
        monkeypatch.delenv(name, raising=False)
    yield


def test_every_cli_option_refuses_bad_input_with_exit_2_one_line_and_no_write(
    world_billing: Billing, mongo_uri: str, db_name: str, capsys: pytest.CaptureFixture[str],
    no_cli_env: None,
) -> None:
    two_orgs(world_billing)
    before = dump(world_billing.database)
    capsys.readouterr()
    problems: list[str] = []

    for args in CLI_CASES:
        args = [a.replace("{db}", db_name) for a in args]
        for as_json in (False, True):
            argv = ["--uri", mongo_uri, "--database", db_name, *args,
                    *(["--json"] if as_json else [])]
            label = " ".join(a if len(a) < 40 else a[:20] + "..." for a in args) + \
                (" --json" if as_json else "")
            try:
                code = billing.cli.main(argv)
            except BaseException as exc:  # noqa: BLE001 - an escaped exception is a failure
                code = f"raised {type(exc).__name__}: {exc!s:.200}"
            out, err = capsys.readouterr()
            figures.add("bad inputs tried", 1)
            lines = err.splitlines()
            if code != 2:
                problems.append(f"{label}: exit {code}, expected 2; stderr {err[:200]!r}")
            elif len(lines) != 1 or not lines[0].startswith("billing: error: ") \
                    or len(lines[0]) <= len("billing: error: "):
                problems.append(f"{label}: stderr is not one error line: {err[:300]!r}")
            if "Traceback" in out + err:
                problems.append(f"{label}: traceback in the output")
            if as_json and code == 2:
                doc = json.loads(out)
                if doc.get("exit_code") != 2 or not doc.get("error"):
                    problems.append(f"{label}: JSON error document {out[:200]!r}")
            elif not as_json and out:
                problems.append(f"{label}: unexpected stdout {out[:200]!r}")
            changed = dump(world_billing.database) != before
            figures.add("writes caused by bad input", int(changed))
            if changed:
                problems.append(f"{label}: the database changed")
                before = dump(world_billing.database)

    assert not problems, "\n".join(problems)


# ---- error messages stay short even for huge input ---------------------------------------------
# billing.adapters.ids cuts what it echoes to 60 characters; these paths echo the whole value, so
# a 1 MB argument becomes a 1 MB error message (and a 1 MB line on the CLI's stderr).

HUGE_ECHOES: list[tuple[str, Callable[[Any], Any]]] = [
    ("orgs.create currency", lambda b: b.orgs.create(
        name="N", currency=MB, per_conversation=1, per_started_minute=1)),
    ("reconciliation.run checks", lambda b: b.reconciliation.run(checks=[MB])),
    ("Period.month (invoice run --period)", lambda b: Period.month(MB)),
    ("parse_shard (reconcile --shard)", lambda b: b.reconciliation.run(shard=MB + "/2")),
]


@pytest.mark.parametrize("label,call", HUGE_ECHOES, ids=[h[0] for h in HUGE_ECHOES])
def test_errors_for_huge_input_have_short_messages(billing: Billing, label: str,
                                                    call: Callable[[Any], Any]) -> None:
    with pytest.raises(InvalidInput) as caught:
        call(billing)

    assert len(caught.value.message) < 1000, label


# ---- lone surrogates name the field -------------------------------------------------------------

SURROGATE_FIELDS: list[tuple[str, Call]] = [
    ("name", lambda b, w: b.orgs.create(name="Acme \ud800", currency="usd", per_conversation=1,
                                        per_started_minute=1)),
    ("external_id", lambda b, w: b.conversations.record(
        w.a.org, started_at=OCT[0], ended_at=OCT[0] + timedelta(minutes=1),
        external_id="call-\udfff")),
    ("description", lambda b, w: b.line_items.add(w.a.org, w.a.draft, description="Fee \ud800",
                                                  quantity=1, unit_amount=100)),
    ("stripe_payment_method", lambda b, w: b.payment_methods.attach(
        w.a.org, "pm_\ud800", request_id="r-surrogate")),
    ("request_id", lambda b, w: b.payment_methods.attach(
        w.a.org, "pm_card_visa", request_id="r-\udcff")),
]


@pytest.mark.parametrize("field,call", SURROGATE_FIELDS, ids=[f[0] for f in SURROGATE_FIELDS])
def test_a_lone_surrogate_is_invalid_input_naming_the_field(
    world_billing: Billing, field: str, call: Call
) -> None:
    w = two_orgs(world_billing)
    before = dump(world_billing.database)

    with pytest.raises(InvalidInput) as caught:
        call(world_billing, w)

    assert field in caught.value.message and "surrogate" in caught.value.message
    caught.value.message.encode()  # the message itself is printable UTF-8
    assert dump(world_billing.database) == before


# ---- Billing(...) / AsyncBilling(...) options: ConfigurationError when built --------------------

BAD_OPTIONS: list[tuple[str, dict[str, Any]]] = [
    *[(f"database={value!r:.30}", {"database": value}) for value in [
        "a$b", "", "a.b", 5, None, "a/b", "a\\b", "a b", 'a"b', "a\x00b", "x" * 64,
        "é" * 32, "db\ud800", b"billing"]],
    *[(f"max_docs_per_transaction={value!r}", {"max_docs_per_transaction": value})
      for value in [0, -1, 100_001, 1.5, 10.0, True, "10", None, math.nan]],
    *[(f"transaction_retry_seconds={value!r}", {"transaction_retry_seconds": value})
      for value in ["10", math.nan, math.inf, -math.inf, 0, -1, True, None, 86_401,
                    Decimal("10"), [10]]],
    *[(f"payment_lease_seconds={value!r}", {"payment_lease_seconds": value})
      for value in [math.inf, "60", math.nan, 0, -5, True, None, 10**9]],
    *[(f"{flag}={value!r}", {flag: value}) for flag in ("client_bulk_write", "joined_reads")
      for value in ["yes", 1, 0, "False"]],
    *[(f"max_concurrent_transactions={value!r}", {"max_concurrent_transactions": value})
      for value in [-1, 10_001, True, 1.0, "2", math.nan]],
    *[(f"webhook_secret={value!r}", {"webhook_secret": value})
      for value in ["", 5, b"whsec_x", "whsec_\ud800", ["whsec_x"]]],
    *[(f"clock={value!r}", {"clock": value}) for value in ["now", 5, datetime.now(UTC)]],
    ("gateway=object()", {"gateway": object()}),
    ("gateway='sk_test'", {"gateway": "sk_test"}),
]


@pytest.mark.parametrize("label,options", BAD_OPTIONS, ids=[o[0] for o in BAD_OPTIONS])
async def test_bad_options_raise_configuration_error_when_built(
    client: Any, async_client: Any, billing: Billing, label: str, options: dict[str, Any]
) -> None:
    names = set(client.list_database_names())
    before = dump(billing.database)
    figures.add("bad inputs tried", 2)

    for make, c in ((Billing, client), (AsyncBilling, async_client)):
        with pytest.raises(ConfigurationError) as caught:
            make(c, **{"database": billing.database.name, **options})
        assert caught.value.message.strip()
        caught.value.message.encode()  # printable, even when it quotes a lone surrogate

    assert set(client.list_database_names()) == names
    assert dump(billing.database) == before


@pytest.mark.parametrize("label", ["async gateway in Billing", "sync gateway in AsyncBilling",
                                   "AsyncMongoClient in Billing", "MongoClient in AsyncBilling",
                                   "URI string as client"])
async def test_mismatched_clients_and_gateways_raise_configuration_error_when_built(
    client: Any, async_client: Any, db_name: str, label: str
) -> None:
    make: Any = {
        "async gateway in Billing": lambda: Billing(client, database=db_name,
                                                    gateway=AsyncFakeGateway()),
        "sync gateway in AsyncBilling": lambda: AsyncBilling(async_client, database=db_name,
                                                             gateway=FakeGateway()),
        "AsyncMongoClient in Billing": lambda: Billing(async_client, database=db_name),
        "MongoClient in AsyncBilling": lambda: AsyncBilling(client, database=db_name),
        "URI string as client": lambda: Billing("mongodb://127.0.0.1:1", database=db_name),
    }[label]
    figures.add("bad inputs tried", 1)

    with pytest.raises(ConfigurationError):
        make()
    assert db_name not in client.list_database_names()


def test_edge_options_that_are_valid_are_accepted(client: Any, db_name: str) -> None:
    b = Billing(client, database=db_name, max_docs_per_transaction=1,
                transaction_retry_seconds=0.5, payment_lease_seconds=86_400,
                client_bulk_write=False, joined_reads=None, webhook_secret="whsec_é",
                gateway=FakeGateway())
    b.setup()
    org = b.orgs.create(name="Zoë 東京 🚀", currency="usd", per_conversation=1,
                        per_started_minute=1)
    assert b.orgs.get(org.id).name == "Zoë 東京 🚀"
    # 63 bytes of UTF-8 is the longest name MongoDB takes.
    assert Billing(client, database="é" * 31 + "x").database.name == "é" * 31 + "x"


START = datetime(2026, 10, 5, 9, 0, tzinfo=UTC)
END = datetime(2026, 10, 5, 9, 3, tzinfo=UTC)


@pytest.mark.parametrize("host_doc", [
    {"ended_at": END}, {"started_at": START}, {"started_at": [START], "ended_at": END},
    {"started_at": START, "ended_at": END, "line_item_id": [None]},
    {"started_at": START, "ended_at": END, "external_id": ["call-1", "call-2"]},
], ids=["no-start", "no-end", "array-start", "array-link", "array-external-id"])
@pytest.mark.parametrize("call", ["record", "record_many"])
def test_recording_over_a_host_document_that_breaks_the_contract_is_a_typed_error(
        billing: Billing, host_doc: dict[str, Any], call: str) -> None:
    """The host wrote a conversation under this external_id breaking the data contract:
    recording it again is StateConflict naming that document, and nothing is written."""
    org = billing.orgs.create(name="Host", currency="usd", per_conversation=50,
                              per_started_minute=10)
    bad = ObjectId()
    billing.database.conversations.insert_one({"_id": bad, "org_id": ObjectId(org.id),
                                               "external_id": "call-1", **host_doc})
    before = dump(billing.database)
    with pytest.raises(StateConflict, match=f"conversation {bad}.*breaks the data contract"):
        if call == "record":
            billing.conversations.record(org.id, started_at=START, ended_at=END,
                                         external_id="call-1")
        else:
            billing.conversations.record_many(org.id, [
                {"started_at": START, "ended_at": END, "external_id": "call-0"},
                {"started_at": START, "ended_at": END, "external_id": "call-1"}])
    assert dump(billing.database) == before


def test_reading_a_stored_document_billing_cannot_read_is_a_typed_error(billing: Billing
                                                                         ) -> None:
    org = billing.orgs.create(name="Host", currency="usd", per_conversation=50,
                              per_started_minute=10)
    cid = ObjectId()
    billing.database.conversations.insert_one({"_id": cid, "org_id": ObjectId(org.id),
                                               "started_at": [START], "ended_at": END})
    with pytest.raises(UnreadableDocument, match=f"conversation {cid} breaks the data "
                       r"contract \(started_at: "):
        billing.conversations.get(org.id, str(cid))
