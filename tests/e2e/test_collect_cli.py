"""`billing collect` and `billing events tail` as on-call runs them: dry run first, then
--apply through Stripe (localstripe), one JSON document, exit codes; the nightly script collects
between invoicing and reconciling."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import stripe
from bson import ObjectId
from pymongo import MongoClient

from billing import Billing
from billing.cli import connect, exit_codes, main
from billing.domain.periods import last_closed_month
from billing.gateways import FakeGateway, StripeGateway
from tests.support.billing_data import closed_month_invoice, dump, seed_conversations
from tests.support.stripe import TEST_KEY, card

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
VISA = "4242424242424242"


@pytest.fixture
def billed(client: MongoClient[dict[str, Any]], db_name: str, stripe_client: stripe.StripeClient,
           stripe_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    for name in ("STRIPE_API_KEY", "STRIPE_API_BASE", "MONGODB_URI", "BILLING_FAULTS"):
        monkeypatch.delenv(name, raising=False)
    b = Billing(client, database=db_name, gateway=StripeGateway(stripe_client, off_session=False))
    b.setup()
    org = b.orgs.create(name="Acme Corp", currency="usd", per_conversation=50,
                        per_started_minute=10)
    period = last_closed_month()
    seed_conversations(b.database, org.id, 4, start=period.start)
    inv = b.invoices.create_for_period(org.id, period.start, period.end)
    b.payment_methods.attach(org.id, card(stripe_client, VISA), request_id="r-1")
    return {"billing": b, "org": org, "invoice": inv, "stripe_url": stripe_url}


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_collect_dry_run_then_apply_then_events(
    mongo_uri: str, db_name: str, billed: dict[str, Any], capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch, stripe_client: stripe.StripeClient,
) -> None:
    b, org, inv = billed["billing"], billed["org"], billed["invoice"]
    base = ["--uri", mongo_uri, "--database", db_name]
    before = dump(b.database)
    code, out, _ = run(capsys, *base, "collect")
    assert code == 1 and f"[would_charge] Acme Corp (org {org.id})" in out, out
    assert max(len(line) for line in out.splitlines()) <= 100
    assert dump(b.database) == before  # a dry run writes nothing

    code, out, err = run(capsys, *base, "collect", "--apply", "--json")
    assert code == 3 and "STRIPE_API_KEY" in err  # nothing charged without Stripe

    monkeypatch.setenv("STRIPE_API_KEY", TEST_KEY)
    monkeypatch.setenv("STRIPE_API_BASE", billed["stripe_url"])
    monkeypatch.setenv("BILLING_STRIPE_OFF_SESSION", "0")
    code, out, err = run(capsys, *base, "collect", "--apply", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["exit_code"] == 0 and doc["counts"]["paid"] == 1, (out, err)
    assert doc["charged"] == {"usd": inv.total} and TEST_KEY not in out + err
    customer = b.orgs.get(org.id).stripe_customer_id
    charges = stripe_client.v1.charges.list(params={"customer": customer}).data
    assert [c.amount for c in charges] == [inv.total]
    code, out, _ = run(capsys, *base, "collect", "--apply", "--json")
    assert code == 0 and json.loads(out)["invoices"] == []  # paid: nothing more to collect

    code, out, _ = run(capsys, *base, "events", "tail", "--org", org.id, "--json")
    page = json.loads(out)
    assert code == 0 and [e["type"] for e in page["events"]][0] == "invoice.finalized"
    assert "invoice.paid" in [e["type"] for e in page["events"]]
    code, out, _ = run(capsys, *base, "events", "tail", "--org", org.id)
    assert code == 0 and "invoice.paid" in out
    code, _, err = run(capsys, *base, "events", "tail")
    assert code == 2 and "--org" in err
    for paging in (["--after", "3"], ["--limit", "5"]):  # refused, not silently ignored
        code, _, err = run(capsys, *base, "events", "tail", "--follow", *paging)
        assert code == 2 and "--follow" in err


def test_collect_names_the_org_it_could_not_read_in_text_as_in_json(
    mongo_uri: str, db_name: str, client: MongoClient[dict[str, Any]],
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("STRIPE_API_KEY", "STRIPE_API_BASE", "MONGODB_URI", "BILLING_FAULTS"):
        monkeypatch.delenv(name, raising=False)
    b = Billing(client, database=db_name)
    b.setup()
    org, inv = closed_month_invoice(b, name="Broken Co")
    # A document the validator accepts but billing cannot read.
    b.database.invoices.update_one({"_id": ObjectId(inv.id)}, {"$unset": {"created_at": ""}})
    base = ["--uri", mongo_uri, "--database", db_name, "collect"]

    code, out, _ = run(capsys, *base, "--json")
    assert code == 1 and [e["org_id"] for e in json.loads(out)["errors"]] == [org.id]

    code, out, _ = run(capsys, *base)
    assert code == 1
    failed = [line for line in out.splitlines() if line.startswith("FAILED")]
    assert failed and failed[0].startswith(f"FAILED Broken Co (org {org.id}): UnreadableDocument")
    assert out.splitlines()[-1] == "Invoices: none open; 1 org could not be read"
    assert max(len(line) for line in out.splitlines()) <= 100


def test_the_exit_code_table_says_what_collect_exits_with(
    mongo_uri: str, db_name: str, client: MongoClient[dict[str, Any]],
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("STRIPE_API_KEY", "STRIPE_API_BASE", "MONGODB_URI", "BILLING_FAULTS"):
        monkeypatch.delenv(name, raising=False)
    fake = FakeGateway()
    b = Billing(client, database=db_name, gateway=fake)
    b.setup()
    org, inv = closed_month_invoice(b, token="pm_card_visa")
    monkeypatch.setattr(connect, "stripe_gateway", lambda: contextlib.nullcontext(fake))
    base = ["--uri", mongo_uri, "--database", db_name, "collect"]
    # The table cron reads (billing --help) has collect's 0, 1 and 4.
    help_rows = exit_codes.EPILOG.split("\n    2  USAGE")[0], exit_codes.EPILOG.split(
        "4  LEASE_NOT_ACQUIRED")[1]
    assert all("collect" in rows for rows in help_rows)

    db = b.database
    db.reconciliation_leases.insert_one({
        "_id": "collect:shard:0/1", "holder": "other", "host": "box-2", "pid": 4242,
        "expires_at": datetime.now(UTC) + timedelta(hours=1)})
    before = dump(db)
    held, _, _ = run(capsys, *base, "--apply")
    assert held == 4 and dump(db) == before and fake.taken(inv.id) == 0
    db.reconciliation_leases.delete_many({})

    due, _, _ = run(capsys, *base)  # a dry run with an invoice due
    paid, _, _ = run(capsys, *base, "--apply")
    done, _, _ = run(capsys, *base, "--apply")  # nothing due any more
    assert (due, paid, done) == (1, 0, 0) and fake.taken(inv.id) == inv.total


@pytest.mark.parametrize("follow", [False, True], ids=["page", "follow"])
def test_events_tail_of_an_unknown_org_exits_2_advising_what_the_cli_can_do(
    mongo_uri: str, db_name: str, client: MongoClient[dict[str, Any]], follow: bool,
) -> None:
    Billing(client, database=db_name).setup()
    unknown = str(ObjectId())
    env = {k: v for k, v in os.environ.items() if k not in {"BILLING_FAULTS", "MONGODB_URI"}}
    env.update(PYTHONPATH=str(ROOT))
    try:  # --follow used to wait for the unknown org's events, silently, forever
        result = subprocess.run(
            [sys.executable, "-m", "billing.cli", "--uri", mongo_uri, "--database", db_name,
             "events", "tail", "--org", unknown, *(["--follow"] if follow else []), "--json"],
            capture_output=True, text=True, timeout=60, env=env, cwd=ROOT, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail("events tail waited for an org that does not exist")

    assert result.returncode == 2 and json.loads(result.stdout)["exit_code"] == 2
    [line] = result.stderr.splitlines()
    # No command creates an org: the library's "create it with orgs.create()" is not advice here.
    assert unknown in line and "--org" in line and "orgs.create" not in line, line


def test_cron_nightly_collects_between_invoicing_and_reconciling(
    mongo_uri: str, db_name: str, billed: dict[str, Any],
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"BILLING_FAULTS", "MONGODB_URI"}}
    env.update(PYTHONPATH=str(ROOT), STRIPE_API_KEY=TEST_KEY,
               STRIPE_API_BASE=billed["stripe_url"], BILLING_STRIPE_OFF_SESSION="0")
    result = subprocess.run([str(ROOT / "scripts" / "cron-nightly"), "--uri", mongo_uri,
                             "--database", db_name], capture_output=True, text=True,
                            timeout=180, env=env, check=False)
    invoiced, collected, reconciled = (json.loads(line) for line in result.stdout.splitlines())
    assert "period" in invoiced and collected["counts"]["paid"] == 1
    assert "findings" in reconciled
    assert result.returncode == max(d["exit_code"] for d in (invoiced, collected, reconciled))
    doc = billed["billing"].invoices.get(billed["org"].id, billed["invoice"].id)
    assert doc.status.value == "paid"
