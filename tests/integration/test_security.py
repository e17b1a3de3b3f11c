"""Security: tenants cannot reach each other's documents, unauthentic webhooks write nothing,
and secrets (the Stripe key, a MongoDB password) never reach output, errors or audit records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import stripe
from bson import ObjectId
from pymongo import MongoClient

import billing.cli
from billing import Billing
from billing.adapters.stripe_webhooks import sign
from billing.errors import (
    BillingError,
    ConfigurationError,
    InvoiceNotFound,
    LineItemNotFound,
    NotFound,
    PaymentMethodNotFound,
)
from billing.gateways import StripeGateway
from billing.plans.webhooks import WebhookOutcome
from tests.support import figures
from tests.support.billing_data import dump
from tests.support.isolation_world import SEP, WEBHOOK_SECRET, World, two_orgs
from tests.support.rejected_webhooks import event_body, rejected_deliveries

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def secure(client: Any, db_name: str, stripe_gateway: Any) -> Billing:
    b = Billing(client, database=db_name, gateway=stripe_gateway, webhook_secret=WEBHOOK_SECRET,
                transaction_retry_seconds=60)
    b.setup()
    return b


def tenant_docs(b: Billing, org_id: str) -> dict[str, list[dict[str, Any]]]:
    """Every document of one org, in every collection (the org itself included)."""
    oid = ObjectId(org_id)
    db = b.database
    out = {name: list(db[name].find({"org_id": oid}).sort("_id", 1))
           for name in sorted(db.list_collection_names())}
    out["orgs"] = list(db.orgs.find({"_id": oid}))
    return out


# ---- tenant isolation ------------------------------------------------------------------------

CROSS: list[tuple[str, Callable[[Billing, World], Any], type[NotFound]]] = [
    ("finalize B's draft", lambda b, w: b.invoices.finalize(w.a.org, w.b.draft),
     InvoiceNotFound),
    ("void B's draft", lambda b, w: b.invoices.void(w.a.org, w.b.draft), InvoiceNotFound),
    ("void B's paid invoice", lambda b, w: b.invoices.void(w.a.org, w.b.open_invoice),
     InvoiceNotFound),
    ("pay B's paid invoice", lambda b, w: b.invoices.pay(w.a.org, w.b.open_invoice),
     InvoiceNotFound),
    ("pay B's draft", lambda b, w: b.invoices.pay(w.a.org, w.b.draft), InvoiceNotFound),
    ("add a line item to B's draft", lambda b, w: b.line_items.add(
        w.a.org, w.b.draft, description="Fee", quantity=1, unit_amount=1), InvoiceNotFound),
    ("remove B's item from B's draft", lambda b, w: b.line_items.remove(
        w.a.org, w.b.draft, w.b.manual_item), InvoiceNotFound),
    ("remove B's item from A's draft", lambda b, w: b.line_items.remove(
        w.a.org, w.a.draft, w.b.manual_item), LineItemNotFound),
    ("remove B's usage item from A's draft", lambda b, w: b.line_items.remove(
        w.a.org, w.a.draft, w.b.usage_item), LineItemNotFound),
    ("remove A's item from B's draft", lambda b, w: b.line_items.remove(
        w.a.org, w.b.draft, w.a.manual_item), InvoiceNotFound),
    ("detach B's method", lambda b, w: b.payment_methods.detach(w.a.org, w.b.method),
     PaymentMethodNotFound),
    ("make B's method A's default", lambda b, w: b.payment_methods.set_default(
        w.a.org, w.b.method), PaymentMethodNotFound),
    ("read B's invoice", lambda b, w: b.invoices.get(w.a.org, w.b.open_invoice),
     InvoiceNotFound),
    ("read B's draft", lambda b, w: b.invoices.get(w.a.org, w.b.draft), InvoiceNotFound),
    ("read B's payment attempts", lambda b, w: b.invoices.payment_attempts(
        w.a.org, w.b.open_invoice), InvoiceNotFound),
    ("read B's conversation", lambda b, w: b.conversations.get(w.a.org, w.b.conversation),
     NotFound),
]


def test_org_a_cannot_touch_or_read_org_b_documents(secure: Billing) -> None:
    w = two_orgs(secure)
    before = dump(secure.database)

    for label, call, expected in CROSS:
        with pytest.raises(expected) as caught:
            call(secure, w)
        # The same answer as for an id that exists nowhere: no state of B's leaks (a paid
        # invoice would otherwise say InvalidTransition, a manual item InvoiceNotEditable).
        assert caught.value.message.strip(), label
        assert dump(secure.database) == before, label
        figures.add("cross-tenant calls refused", 1)

    assert [m.id for m in secure.payment_methods.list(w.a.org)] == [w.a.method]
    assert secure.invoices.get(w.a.org, w.a.open_invoice).org_id == w.a.org
    assert dump(secure.database) == before


def test_org_b_idempotency_keys_used_by_org_a_make_documents_of_org_a(secure: Billing) -> None:
    w = two_orgs(secure)
    b_before = tenant_docs(secure, w.b.org)
    b_conv = secure.conversations.get(w.b.org, w.b.conversation)

    same_times = secure.conversations.record(
        w.a.org, started_at=b_conv.started_at, ended_at=b_conv.ended_at,
        external_id=w.b.external_id)
    other_times = secure.conversations.record(
        w.a.org, started_at=b_conv.started_at, ended_at=b_conv.ended_at + timedelta(seconds=1),
        external_id=f"{w.b.external_id}-2")

    # A new conversation of A (not B's, and no StateConflict revealing B's), B untouched.
    assert same_times.id != w.b.conversation and same_times.org_id == w.a.org
    assert other_times.org_id == w.a.org
    assert tenant_docs(secure, w.b.org) == b_before
    assert secure.database.conversations.count_documents(
        {"external_id": w.b.external_id}) == 2

    # The same for payment methods: B's request id names no method of A's.
    method = secure.payment_methods.attach(w.a.org, "pm_card_visa", request_id="req-B")
    assert method.id != w.b.method and method.org_id == w.a.org
    assert tenant_docs(secure, w.b.org) == b_before


def break_org(b: Billing, org_id: str, draft: str) -> None:
    """Findings for reconciliation: wrong totals on the draft, an unbilled August conversation."""
    b.database.invoices.update_one({"_id": ObjectId(draft)}, {"$inc": {"subtotal": 7}})
    b.database.conversations.insert_one({
        "org_id": ObjectId(org_id), "started_at": datetime(2026, 8, 3, tzinfo=UTC),
        "ended_at": datetime(2026, 8, 3, 0, 2, tzinfo=UTC), "line_item_id": None})


def test_reconciliation_scoped_to_org_a_reads_and_repairs_only_org_a(secure: Billing) -> None:
    w = two_orgs(secure)
    break_org(secure, w.a.org, w.a.draft)
    break_org(secure, w.b.org, w.b.draft)
    b_before = tenant_docs(secure, w.b.org)
    everything = dump(secure.database)

    dry = secure.reconciliation.run(org_id=w.a.org)
    assert dump(secure.database) == everything
    applied = secure.reconciliation.run(apply=True, org_id=w.a.org)

    for report in (dry, applied):
        assert report.findings and {f.org_id for f in report.findings} == {w.a.org}
        assert not any(w.b.org in json.dumps(f, default=str)
                       for f in report.as_json()["findings"])
    assert applied.clean
    assert tenant_docs(secure, w.b.org) == b_before  # B still broken: not its run
    audit = secure.database.reconciliation_runs.find_one({"_id": ObjectId(applied.run_id)})
    assert audit is not None and audit["org_id"] == ObjectId(w.a.org)
    assert w.b.org not in json.dumps(audit, default=str)
    assert secure.reconciliation.run(org_id=w.b.org).findings  # B's findings are still there


def test_a_webhook_naming_org_a_cannot_settle_org_b_payment_or_detach_its_method(
    secure: Billing,
) -> None:
    w = two_orgs(secure)
    b_before = tenant_docs(secure, w.b.org)
    payment = secure.database.payments.find_one({"_id": ObjectId(w.b.payment)})
    b_method = secure.database.payment_methods.find_one({"_id": ObjectId(w.b.method)})
    a_org = secure.database.orgs.find_one({"_id": ObjectId(w.a.org)})
    assert payment and b_method and a_org

    crossed_intent = {"id": payment["intent_id"], "object": "payment_intent",
                      "status": "succeeded", "amount": 1, "currency": "usd",
                      "metadata": {"org_id": w.a.org, "invoice_id": w.b.open_invoice,
                                   "payment_id": w.b.payment}}
    crossed_method = {"id": b_method["stripe_id"], "object": "payment_method",
                      "customer": a_org["stripe_customer_id"]}
    results = []
    for kind, obj in [("payment_intent.succeeded", crossed_intent),
                      ("payment_intent.payment_failed", crossed_intent),
                      ("payment_method.detached", crossed_method)]:
        payload = event_body(id=f"evt_{ObjectId()}", type=kind, data={"object": obj})
        results.append(secure.webhooks.handle(payload, sign(payload, secret=WEBHOOK_SECRET)))

    assert [r.outcome for r in results] == [WebhookOutcome.IGNORED] * 3, results
    assert tenant_docs(secure, w.b.org) == b_before


# ---- webhook rejection -----------------------------------------------------------------------


def test_unauthentic_or_unparseable_webhooks_are_rejected_with_400_and_write_nothing(
    secure: Billing,
) -> None:
    w = two_orgs(secure)
    before = dump(secure.database)

    for label, make in rejected_deliveries():
        result = secure.webhooks.handle(*make())

        assert result.outcome is WebhookOutcome.REJECTED, (label, result)
        assert result.http_status == 400 and result.detail.strip(), (label, result)
        assert result.event_id is None, label  # nothing of the body was trusted
        # Rejected deliveries are not failed *processing*: not even webhook_log gets a line.
        assert dump(secure.database) == before, label
        figures.add("webhook rejections checked", 1)
    assert secure.database.webhook_log.count_documents({}) == 0
    assert secure.database.webhook_events.count_documents({}) == 0

    # Control: the same body, signed now with the right secret, is accepted and recorded, so
    # it was the signature (not the body) that kept the rejected ones out.
    payload = event_body()
    accepted = secure.webhooks.handle(payload, sign(payload, secret=WEBHOOK_SECRET))
    assert accepted.outcome is WebhookOutcome.IGNORED and accepted.http_status == 200
    assert secure.database.webhook_events.count_documents({"_id": "evt_rejected_1"}) == 1
    assert w.a.org  # the world is there to make "nothing written" meaningful


def test_a_webhook_signed_at_the_edge_of_the_tolerance_is_accepted(secure: Billing) -> None:
    payload = event_body(id="evt_edge")
    result = secure.webhooks.handle(
        payload, sign(payload, secret=WEBHOOK_SECRET, timestamp=int(time.time()) - 290))

    assert result.outcome is WebhookOutcome.IGNORED


# ---- secrets ---------------------------------------------------------------------------------

STRIPE_KEY = "sk_test_SECRETSECRET123"
BAD_STRIPE_KEY = "rk_test_SECRETSECRET123"  # localstripe refuses keys not starting with sk_
KEY_PART = "SECRETSECRET123"
PASSWORD = "S3cretPassw0rd"
UNREACHABLE = (f"mongodb://user:{PASSWORD}@127.0.0.1:1/?replicaSet=x"
               "&serverSelectionTimeoutMS=500")
SECRETS = (PASSWORD, KEY_PART, "S3cretPassw0rd%21")


def leaks(*texts: Any) -> list[str]:
    """The secrets found in `texts` (their str and repr)."""
    found = []
    for text in texts:
        for secret in SECRETS:
            if secret in str(text) or secret in repr(text):
                found.append(secret)
    figures.add("secret leak checks", 1)
    return found


def full_trace(exc: BaseException) -> str:
    """What a user's logger prints for an exception: the message, repr and the whole chain."""
    return "".join(traceback.format_exception(exc)) + repr(exc) + str(exc)


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in ("MONGODB_URI", "STRIPE_API_KEY", "STRIPE_API_BASE", "BILLING_FAULTS"):
        monkeypatch.delenv(name, raising=False)
    yield monkeypatch


@pytest.mark.parametrize("source", ["--uri", "MONGODB_URI"])
def test_cli_errors_never_show_the_password_or_the_stripe_key(
    source: str, cli_env: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    cli_env.setenv("STRIPE_API_KEY", STRIPE_KEY)
    encoded = UNREACHABLE.replace(PASSWORD, "S3cretPassw0rd%21")
    malformed = f"mongodb://user:{PASSWORD}@127.0.0.1:port/"
    cases: list[tuple[str, list[str], int]] = []  # (uri, command, exit code)
    for command in (["invoice", "run", "--period", "2026-10"], ["reconcile"],
                    ["reconcile", "--apply", "--check", "payment_method"], ["demo"]):
        cases.append((UNREACHABLE, command, 3))
    cases.append((encoded, ["invoice", "run", "--period", "2026-10"], 3))
    for uri in (UNREACHABLE, encoded):
        cases += [(uri, ["invoice", "run", "--period", "2026-13"], 2),
                  (uri, ["reconcile", "--shard", "9/2"], 2),
                  (uri, ["invoice", "run", "--period", "2026-10", uri], 2),  # echoed back
                  (uri, ["reconcile", "--bogus", uri], 2)]
    cases.append((malformed, ["invoice", "run", "--period", "2026-10"], 3))

    problems = []
    for uri, command, expected in cases:
        for as_json in (False, True):
            if source == "MONGODB_URI":
                cli_env.setenv("MONGODB_URI", uri)
                argv = [*command]
            else:
                argv = ["--uri", uri, *command]
            argv += ["--json"] if as_json else []
            code = billing.cli.main(argv)
            out, err = capfd.readouterr()
            if found := leaks(out, err):
                problems.append(f"{argv}: {found} in {out + err!r:.300}")
            if code != expected:
                problems.append(f"{argv}: exit {code}, expected {expected}: {err!r:.300}")
            if "Traceback" in out + err:
                problems.append(f"{argv}: traceback")

    assert not problems, "\n".join(problems)


def cli_subprocess(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items()
            if k not in {"MONGODB_URI", "STRIPE_API_KEY", "STRIPE_API_BASE", "BILLING_FAULTS"}}
    base["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "billing.cli", *args], capture_output=True,
                          text=True, timeout=120, env={**base, **env}, cwd=ROOT, check=False)


def test_cli_subprocess_errors_never_show_the_password_or_the_stripe_key() -> None:
    via_env = cli_subprocess("invoice", "run", "--period", "2026-10", "--json",
                             MONGODB_URI=UNREACHABLE, STRIPE_API_KEY=STRIPE_KEY)
    via_arg = cli_subprocess("--uri", UNREACHABLE, "reconcile", "--apply",
                             STRIPE_API_KEY=STRIPE_KEY, STRIPE_API_BASE="http://127.0.0.1:1")

    for result in (via_env, via_arg):
        assert result.returncode == 3, result.stderr
        assert not leaks(result.stdout, result.stderr)
        assert "Traceback" not in result.stderr


def test_cli_reconcile_with_a_rejected_stripe_key_keeps_it_out_of_output_and_audit(
    secure: Billing, mongo_uri: str, db_name: str, stripe_url: str,
    cli_env: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str],
) -> None:
    two_orgs(secure)
    problems = []
    for key in (BAD_STRIPE_KEY, STRIPE_KEY):
        cli_env.setenv("STRIPE_API_KEY", key)
        cli_env.setenv("STRIPE_API_BASE", stripe_url)
        for args in (["reconcile", "--json"], ["reconcile", "--apply", "--json"],
                     ["reconcile", "--apply"], ["reconcile"]):
            code = billing.cli.main(["--uri", mongo_uri, "--database", db_name, *args])
            out, err = capfd.readouterr()
            if found := leaks(out, err):
                problems.append(f"{key} {args}: {found} in {out + err!r:.300}")
            if code not in (0, 1, 3):
                problems.append(f"{key} {args}: exit {code}")
    audits = list(secure.database.reconciliation_runs.find({}))

    assert not problems, "\n".join(problems)
    assert audits and not leaks(audits, dump(secure.database))


def test_library_errors_for_an_unreachable_database_never_show_the_password() -> None:
    client: MongoClient[dict[str, Any]] = MongoClient(UNREACHABLE)
    with client:
        b = Billing(client, database="billing")
        calls: list[Callable[[], Any]] = [
            b.setup,
            lambda: b.orgs.create(name="A", currency="usd", per_conversation=1,
                                  per_started_minute=1),
            lambda: b.orgs.get(str(ObjectId())),
            lambda: b.invoices.create_for_period(str(ObjectId()), *SEP),
            lambda: b.reconciliation.run(),
        ]
        for call in calls:
            with pytest.raises(BillingError) as caught:
                call()
            assert not leaks(caught.value.message, full_trace(caught.value))


def test_stripe_errors_never_show_the_key(stripe_url: str, secure: Billing) -> None:
    rejected = StripeGateway(stripe.StripeClient(
        BAD_STRIPE_KEY, base_addresses={"api": stripe_url}), off_session=False)
    unreachable = StripeGateway(stripe.StripeClient(
        STRIPE_KEY, base_addresses={"api": "http://127.0.0.1:1"}), off_session=False)
    accepted = StripeGateway(stripe.StripeClient(
        STRIPE_KEY, base_addresses={"api": stripe_url}), off_session=False)
    calls: list[tuple[StripeGateway, Callable[[StripeGateway], Any], type[BillingError]]] = [
        (rejected, lambda g: g.create_customer(org_id="o", name="A", idempotency_key="k1"),
         ConfigurationError),
        (rejected, lambda g: g.detach("pm_x", idempotency_key="k2"), ConfigurationError),
        (unreachable, lambda g: g.create_customer(org_id="o", name="A", idempotency_key="k3"),
         BillingError),
        (accepted, lambda g: g.attach(payment_method="pm_missing", customer_id="cus_missing",
                                      idempotency_key="k4"), BillingError),
        (accepted, lambda g: g.retrieve_intent("pi_missing"), BillingError),
    ]
    for gateway, call, expected in calls:
        with pytest.raises(expected) as caught:
            call(gateway)
        assert not leaks(caught.value.message, full_trace(caught.value)), full_trace(
            caught.value)

    # Through Billing: the refused attach leaves its records, and they hold no key either.
    org = secure.orgs.create(name="A", currency="usd", per_conversation=1, per_started_minute=1)
    for gateway in (rejected, unreachable):
        b = Billing(secure.database.client, database=secure.database.name, gateway=gateway)
        with pytest.raises(BillingError) as caught:
            b.payment_methods.attach(org.id, "pm_card_visa", request_id=f"r-{id(gateway)}")
        assert not leaks(full_trace(caught.value))
    assert not leaks(dump(secure.database))


def test_reconciliation_with_a_rejected_stripe_key_keeps_it_out_of_report_and_audit(
    secure: Billing, stripe_url: str,
) -> None:
    two_orgs(secure)
    rejected = StripeGateway(stripe.StripeClient(
        BAD_STRIPE_KEY, base_addresses={"api": stripe_url}), off_session=False)
    b = Billing(secure.database.client, database=secure.database.name, gateway=rejected)

    try:
        report: Any = b.reconciliation.run(apply=True, checks=["payment_method"])
        shown = json.dumps(report.as_json(), default=str)
    except BillingError as exc:
        shown = full_trace(exc)

    assert not leaks(shown)
    assert secure.database.reconciliation_runs.count_documents({}) == 1
    assert not leaks(dump(secure.database))
