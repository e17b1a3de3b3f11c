"""`billing invoice show` and `billing invoice bill-late` as on-call runs them: a subprocess,
its exit code, its output and the documents it leaves in the database."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest
from bson import ObjectId
from pymongo import MongoClient

from billing import Billing
from billing.gateways import FakeGateway
from tests.e2e.test_cli import PERIOD, cli, money_text, one_error_line
from tests.support.billing_data import dump, expected_total, seed_conversations
from tests.support.invariants import check_billed_once, check_totals_and_links

pytestmark = pytest.mark.integration


@pytest.fixture
def invoiced(client: MongoClient[dict[str, Any]], db_name: str) -> dict[str, Any]:
    """An org whose last closed month is invoiced (and paid), then three conversations of that
    month recorded late; another org with an invoice of its own."""
    fake = FakeGateway()
    b = Billing(client, database=db_name, gateway=fake, transaction_retry_seconds=60)
    b.setup()
    org = b.orgs.create(name="Late Org", currency="usd", per_conversation=50,
                        per_started_minute=10)
    other = b.orgs.create(name="Other Org", currency="eur", per_conversation=7,
                          per_started_minute=3)
    seed_conversations(b.database, org.id, 4, start=PERIOD.start)
    seed_conversations(b.database, other.id, 2, start=PERIOD.start)
    first = b.invoices.create_for_period(org.id, PERIOD.start, PERIOD.end)
    theirs = b.invoices.create_for_period(other.id, PERIOD.start, PERIOD.end)
    b.payment_methods.attach(org.id, "pm_card_visa", request_id="r-1", make_default=True)
    payment = b.invoices.pay(org.id, first.id)
    late = seed_conversations(b.database, org.id, 3, start=PERIOD.start + timedelta(days=2))
    return {"billing": b, "org": org, "first": b.invoices.get(org.id, first.id),
            "payment": payment, "late": late, "theirs": theirs, "gateway": fake}


def invoice_cli(uri: str, db_name: str, *args: str) -> Any:
    return cli("--uri", uri, "--database", db_name, "invoice", *args)


def test_bill_late_dry_run_reports_then_apply_bills_a_supplement_once(
    mongo_uri: str, db_name: str, invoiced: dict[str, Any]
) -> None:
    db = invoiced["billing"].database
    org = invoiced["org"]
    first = db.invoices.find_one({"_id": ObjectId(invoiced["first"].id)})
    before = dump(db)

    dry = invoice_cli(mongo_uri, db_name, "bill-late", "--org", org.id, "--period",
                      PERIOD.label)

    assert dry.returncode == 1, dry.stderr
    assert "3 late conversations" in dry.stdout and "supplementary invoice 1" in dry.stdout
    assert "Late Org" in dry.stdout and "--apply" in dry.stdout
    assert dump(db) == before  # a dry run writes nothing

    dry_json = invoice_cli(mongo_uri, db_name, "bill-late", "--org", org.id, "--period",
                           PERIOD.label, "--json")
    doc = json.loads(dry_json.stdout)
    assert dry_json.returncode == 1 and doc["exit_code"] == 1 and doc["invoice"] is None
    assert (doc["late"]["conversations"], doc["late"]["supplement"]) == (3, 1)

    applied = invoice_cli(mongo_uri, db_name, "bill-late", "--org", org.id, "--period",
                          PERIOD.label, "--apply", "--json")

    assert applied.returncode == 0, applied.stderr
    doc = json.loads(applied.stdout)
    total = expected_total(invoiced["late"], 50, 10)
    assert doc["exit_code"] == 0 and doc["invoice"]["supplement"] == 1
    assert (doc["invoice"]["status"], doc["invoice"]["number"]) == ("open", 2)
    assert (doc["invoice"]["conversations"], doc["invoice"]["total"]) == (3, total)
    assert db.invoices.find_one({"_id": ObjectId(invoiced["first"].id)}) == first
    check_totals_and_links(db)
    check_billed_once(db)

    before = dump(db)
    again = invoice_cli(mongo_uri, db_name, "bill-late", "--org", org.id, "--period",
                        PERIOD.label, "--apply")
    dry_again = invoice_cli(mongo_uri, db_name, "bill-late", "--org", org.id, "--period",
                            PERIOD.label)

    assert again.returncode == 0 and "nothing to bill" in again.stdout
    assert dry_again.returncode == 0 and "no late conversations" in dry_again.stdout
    assert dump(db) == before


def test_invoice_show_prints_header_line_items_and_payments(
    mongo_uri: str, db_name: str, invoiced: dict[str, Any]
) -> None:
    org, first, payment = invoiced["org"], invoiced["first"], invoiced["payment"]

    shown = invoice_cli(mongo_uri, db_name, "show", org.id, first.id)

    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert f"Invoice {first.display_number} (paid)" in out
    assert "Late Org" in out and PERIOD.label in out
    assert money_text(first.total, "usd") in out
    assert re.search(rf"amount due +{re.escape(money_text(0, 'usd'))}", out)
    for item in first.line_items:
        assert item.description in out and money_text(item.amount, "usd") in out
    assert payment.intent_id in out and "succeeded" in out

    as_json = invoice_cli(mongo_uri, db_name, "show", org.id, first.id, "--json")

    doc = json.loads(as_json.stdout)
    assert as_json.returncode == 0 and doc["exit_code"] == 0
    assert doc["invoice"]["id"] == first.id and doc["invoice"]["total"] == first.total
    assert (doc["invoice"]["amount_paid"], doc["invoice"]["amount_due"]) == (first.total, 0)
    assert doc["invoice"]["period"] == PERIOD.label and doc["invoice"]["supplement"] == 0
    assert len(doc["invoice"]["line_items"]) == len(first.line_items)
    assert [(p["attempt"], p["status"], p["intent_id"]) for p in doc["payments"]] == [
        (1, "succeeded", payment.intent_id)]


@pytest.mark.parametrize("which", ["other org's", "unknown", "malformed"])
def test_invoice_show_of_an_invoice_the_org_does_not_have_exits_2(
    mongo_uri: str, db_name: str, invoiced: dict[str, Any], which: str
) -> None:
    invoice = {"other org's": invoiced["theirs"].id, "unknown": str(ObjectId()),
               "malformed": '{"$ne": null}'}[which]

    result = invoice_cli(mongo_uri, db_name, "show", invoiced["org"].id, invoice)
    as_json = invoice_cli(mongo_uri, db_name, "show", invoiced["org"].id, invoice, "--json")

    assert result.returncode == 2 and result.stdout == ""
    assert "invoice" in one_error_line(result).lower()
    assert as_json.returncode == 2 and json.loads(as_json.stdout)["exit_code"] == 2


@pytest.mark.parametrize("command", ["invoice show", "credit-note create"])
def test_an_invoice_billing_cannot_read_gives_one_error_line_and_json_not_a_traceback(
    mongo_uri: str, db_name: str, invoiced: dict[str, Any], command: str
) -> None:
    db = invoiced["billing"].database
    org, theirs = invoiced["org"], invoiced["first"]
    # A document the validator accepts but billing cannot read.
    db.invoices.update_one({"_id": ObjectId(theirs.id)}, {"$unset": {"created_at": ""}})
    before = dump(db)
    args = [org.id, theirs.id] + (["--amount", "50", "--reason", "duplicate", "--request-id",
                                   "cn-1", "--no-refund"] if command == "credit-note create"
                                  else [])

    result = cli("--uri", mongo_uri, "--database", db_name, *command.split(), *args, "--json")

    assert result.returncode == 1
    line = one_error_line(result)
    assert "breaks the data contract" in line and "created_at" in line and "Traceback" not in line
    assert json.loads(result.stdout) == {"error": line.removeprefix("billing: error: "),
                                         "exit_code": 1}
    assert dump(db) == before


def test_bill_late_for_an_unknown_org_or_an_open_month_exits_2_and_writes_nothing(
    mongo_uri: str, db_name: str, invoiced: dict[str, Any]
) -> None:
    db = invoiced["billing"].database
    before = dump(db)

    unknown = invoice_cli(mongo_uri, db_name, "bill-late", "--org", str(ObjectId()),
                          "--period", PERIOD.label, "--apply")
    open_month = invoice_cli(mongo_uri, db_name, "bill-late", "--org", invoiced["org"].id,
                             "--period", PERIOD.end.strftime("%Y-%m"), "--apply")

    assert unknown.returncode == 2 and "--org" in one_error_line(unknown)
    assert open_month.returncode == 2 and one_error_line(open_month)
    assert dump(db) == before
