"""`billing reconcile`, `scripts/repair` and `scripts/cron-nightly` as operators run them: exit
codes, the JSON line, and what is (or is not) left changed in the database.

Most cases call `billing.cli.main` in-process (fast); the scripts run as subprocesses.
"""

from __future__ import annotations

import io
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

from billing import Billing, Org
from billing.cli import main
from billing.domain.periods import last_closed_month
from billing.gateways import StripeGateway
from tests.support.billing_data import OCT, OPEN, dump, seed_conversations
from tests.support.invariants import check_totals_and_links
from tests.support.stripe import TEST_KEY

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
LATE = OCT[0] + timedelta(days=20)  # conversations the October invoice run did not see


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _no_stripe(monkeypatch: pytest.MonkeyPatch) -> None:
    # Only the Stripe test below sets a key; the operator's environment must not leak in.
    for name in ("STRIPE_API_KEY", "STRIPE_API_BASE", "MONGODB_URI"):
        monkeypatch.delenv(name, raising=False)


def reconcile(uri: str, db_name: str, capsys: pytest.CaptureFixture[str], *args: str
              ) -> tuple[int, str, str]:
    code = main(["--uri", uri, "--database", db_name, "reconcile", *args])
    out, err = capsys.readouterr()
    return code, out, err


def reconcile_json(uri: str, db_name: str, capsys: pytest.CaptureFixture[str], *args: str
                   ) -> tuple[int, dict[str, Any]]:
    code, out, _ = reconcile(uri, db_name, capsys, "--json", *args)
    [line] = out.splitlines()  # exactly one JSON document
    doc: dict[str, Any] = json.loads(line)
    assert doc["exit_code"] == code
    return code, doc


def script(name: str, *args: str, uri: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in {"BILLING_FAULTS", "STRIPE_API_KEY", "STRIPE_API_BASE"}}
    env.update(MONGODB_URI=uri, PYTHONPATH=str(ROOT))
    return subprocess.run([str(ROOT / "scripts" / name), *args], capture_output=True, text=True,
                          timeout=120, env=env, check=False)


def new_billing(client: MongoClient[dict[str, Any]], db_name: str, **options: Any) -> Billing:
    b = Billing(client, database=db_name, transaction_retry_seconds=60, **options)
    b.setup()
    return b


def invoiced_org(b: Billing, name: str, n: int) -> Org:
    org = b.orgs.create(name=name, currency="usd", per_conversation=50, per_started_minute=10)
    seed_conversations(b.database, org.id, n)
    b.invoices.create_for_period(org.id, *OCT)
    return org


@pytest.fixture
def broken(client: MongoClient[dict[str, Any]], db_name: str) -> dict[str, Any]:
    """Three orgs invoiced for October, then broken: three late October conversations
    (unbilled), a deleted invoice (its line items dangle), a stored total off by one."""
    b = new_billing(client, db_name)
    late, orphan, totals = (invoiced_org(b, name, n)
                            for name, n in (("Late", 10), ("Orphan", 5), ("Totals", 4)))
    db = b.database
    seed_conversations(db, late.id, 3, start=LATE)
    seed_conversations(db, late.id, 2, start=OPEN[0])  # the open month: not due yet
    deleted = db.invoices.find_one_and_delete({"org_id": ObjectId(orphan.id)})
    db.invoices.update_one({"org_id": ObjectId(totals.id)}, {"$inc": {"subtotal": 1, "total": 1}})
    return {"billing": b, "late": late, "orphan": orphan, "totals": totals,
            "dangling": db.line_items.count_documents({"invoice_id": deleted["_id"]})}


def test_a_dry_run_lists_the_findings_exits_1_and_changes_nothing(
    mongo_uri: str, db_name: str, broken: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    db = broken["billing"].database
    before = dump(db)

    code, doc = reconcile_json(mongo_uri, db_name, capsys)

    assert code == 1 and doc["mode"] == "dry-run" and doc["clean"] is False
    assert doc["counts"] == {"unbilled": 1, "dangling_link": broken["dangling"],
                             "wrong_totals": 1, "stale_draft": 0, "payment_method": 0, "payment": 0,
                             "malformed": 0, "usage_quantity": 0}
    assert doc["orgs_scanned"] == 3 and doc["outstanding"] == 2 + broken["dangling"]
    assert {f["result"] for f in doc["findings"]} == {"found"}
    [unbilled] = [f for f in doc["findings"] if f["check"] == "unbilled"]
    assert (unbilled["org_id"], unbilled["count"]) == (broken["late"].id, 3)
    assert len(unbilled["ids"]) == 3 and all(ObjectId.is_valid(i) for i in unbilled["ids"])
    assert dump(db) == before  # not even a lease or an audit record


def test_apply_repairs_everything_and_a_second_run_finds_nothing(
    mongo_uri: str, db_name: str, broken: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    db = broken["billing"].database

    code, doc = reconcile_json(mongo_uri, db_name, capsys, "--apply")

    assert code == 0 and doc["mode"] == "apply" and doc["clean"] is True
    assert {f["result"] for f in doc["findings"]} == {"repaired"}
    # The orphan's released conversations are billed again by the same run.
    assert doc["counts"]["unbilled"] == 2 and doc["counts"]["wrong_totals"] == 1
    check_totals_and_links(db)
    assert db.conversations.count_documents({"line_item_id": None}) == 2  # November's
    late = ObjectId(broken["late"].id)
    assert sorted(i["supplement"] for i in db.invoices.find({"org_id": late})) == [0, 1]
    assert db.reconciliation_runs.count_documents({"status": "finished"}) == 1
    assert db.reconciliation_leases.count_documents({}) == 0  # released
    repaired = dump(db)

    code, doc = reconcile_json(mongo_uri, db_name, capsys, "--apply")

    assert code == 0 and doc["clean"] is True and doc["findings"] == []
    assert set(doc["counts"].values()) == {0}
    repaired.pop("reconciliation_runs")
    after = dump(db)
    assert after.pop("reconciliation_runs")[-1]["status"] == "finished"
    assert after == repaired


def test_the_table_shows_findings_and_says_a_dry_run_changed_nothing(
    mongo_uri: str, db_name: str, broken: dict[str, Any], capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)

    code, out, _ = reconcile(mongo_uri, db_name, capsys, "--check", "unbilled",
                             "--check", "wrong_totals")

    assert code == 1
    assert "[found] unbilled" in out and broken["late"].id in out and broken["totals"].id in out
    assert max(len(line) for line in out.splitlines()) <= 100
    assert f"{broken['late'].name} (org {broken['late'].id})" in out  # names, as invoice run
    assert "3 unbilled conversations" in out
    assert "Findings: 1 unbilled, 1 wrong_totals; 2 outstanding" in out
    assert "dangling_link" not in out  # not chosen
    drawn = terminal.getvalue()
    assert "checking [" in drawn and "] 3/3 orgs" in drawn
    assert "dry run: nothing changed; add --apply to repair" in drawn


def test_apply_reports_what_it_must_not_repair_with_exit_1(
    mongo_uri: str, db_name: str, client: MongoClient[dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    b = new_billing(client, db_name)
    org = invoiced_org(b, "Malformed", 2)
    b.database.conversations.insert_one({"org_id": ObjectId(org.id), "started_at": "yesterday",
                                         "ended_at": LATE, "line_item_id": None})

    code, doc = reconcile_json(mongo_uri, db_name, capsys, "--apply", "--org", org.id)

    assert code == 1 and doc["outstanding"] == 1
    assert [(f["check"], f["result"]) for f in doc["findings"]] == [("malformed", "reported")]


def test_a_lease_held_by_another_run_exits_4_and_changes_nothing(
    mongo_uri: str, db_name: str, broken: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    db = broken["billing"].database
    db.reconciliation_leases.insert_one({
        "_id": "shard:0/1", "holder": "other", "host": "box-2", "pid": 4242,
        "expires_at": datetime.now(UTC) + timedelta(hours=1)})
    before = dump(db)

    code, out, err = reconcile(mongo_uri, db_name, capsys, "--apply")
    as_json = reconcile_json(mongo_uri, db_name, capsys, "--apply")

    assert code == 4 and out == ""
    [line] = err.splitlines()
    assert line.startswith("billing: error: another reconciliation run (other on box-2")
    assert "shard:0/1" in line and "retry" in line
    assert as_json[0] == 4 and "another reconciliation run" in as_json[1]["error"]
    assert dump(db) == before
    # A dry run takes no lease, so it still works meanwhile.
    assert reconcile_json(mongo_uri, db_name, capsys)[0] == 1


@pytest.mark.parametrize(("args", "says"), [
    (["--shard", "1/1"], "shard"),
    (["--shard", "two"], "I/N"),
    (["--check", "totals"], "invalid choice"),
    (["--org", '{"$ne": null}'], "--org"),
    (["--org", str(ObjectId())], "not found"),
])
def test_bad_arguments_exit_2_and_change_nothing(
    mongo_uri: str, db_name: str, broken: dict[str, Any], capsys: pytest.CaptureFixture[str],
    args: list[str], says: str,
) -> None:
    before = dump(broken["billing"].database)

    code, doc = reconcile_json(mongo_uri, db_name, capsys, "--apply", *args)

    assert code == 2 and says in doc["error"]
    assert dump(broken["billing"].database) == before


def test_the_payment_method_check_reads_stripe_only_with_a_key(
    mongo_uri: str, db_name: str, client: MongoClient[dict[str, Any]],
    stripe_client: stripe.StripeClient, stripe_url: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    b = new_billing(client, db_name, gateway=StripeGateway(stripe_client, off_session=False))
    org = b.orgs.create(name="Cards", currency="usd", per_conversation=1, per_started_minute=1)
    method = b.payment_methods.attach(org.id, "pm_card_visa", request_id="r-1")
    assert method.stripe_id is not None
    stripe_client.v1.payment_methods.detach(method.stripe_id)  # behind billing's back
    check = ("--check", "payment_method")

    assert reconcile_json(mongo_uri, db_name, capsys, *check)[1]["findings"] == []

    monkeypatch.setenv("STRIPE_API_KEY", TEST_KEY)
    monkeypatch.setenv("STRIPE_API_BASE", stripe_url)
    code, doc = reconcile_json(mongo_uri, db_name, capsys, *check)
    assert code == 1 and "not attached in Stripe" in doc["findings"][0]["summary"]

    code, out, err = reconcile(mongo_uri, db_name, capsys, *check, "--apply")
    assert code == 0 and TEST_KEY not in out + err
    stored = b.database.payment_methods.find_one({"_id": ObjectId(method.id)})
    assert stored is not None and stored["status"] == "detached"


def test_repair_is_a_dry_run_unless_told_to_apply(
    mongo_uri: str, db_name: str, broken: dict[str, Any]
) -> None:
    before = dump(broken["billing"].database)

    result = script("repair", "--database", db_name, "--check", "unbilled", "--json",
                    uri=mongo_uri)

    assert result.returncode == 1, result.stderr
    doc = json.loads(result.stdout)
    assert doc["mode"] == "dry-run" and doc["counts"] == {"unbilled": 1}
    assert dump(broken["billing"].database) == before


def test_cron_nightly_invoices_then_reconciles_and_exits_with_the_worse_code(
    mongo_uri: str, db_name: str, client: MongoClient[dict[str, Any]]
) -> None:
    b = new_billing(client, db_name)
    org = b.orgs.create(name="Nightly", currency="usd", per_conversation=5, per_started_minute=1)
    # In the month the nightly run invoices: the last one closed by the real clock.
    seed_conversations(b.database, org.id, 6, start=last_closed_month().start)
    b.database.reconciliation_leases.insert_one({
        "_id": "shard:0/1", "holder": "other", "host": "box-2", "pid": 4242,
        "expires_at": datetime.now(UTC) + timedelta(hours=1)})

    held = script("cron-nightly", "--database", db_name, uri=mongo_uri)

    assert held.returncode == 4, held.stderr
    invoiced, refused = map(json.loads, held.stdout.splitlines())
    assert invoiced["exit_code"] == 0 and invoiced["counts"]["invoiced"] == 1
    assert refused["exit_code"] == 4 and "another reconciliation run" in refused["error"]

    b.database.reconciliation_leases.delete_many({})
    clean = script("cron-nightly", "--database", db_name, uri=mongo_uri)

    assert clean.returncode == 0, clean.stderr
    invoiced, reconciled = map(json.loads, clean.stdout.splitlines())
    assert invoiced["counts"]["already_invoiced"] == 1 and invoiced["exit_code"] == 0
    assert reconciled["mode"] == "apply" and reconciled["clean"] is True
    assert reconciled["exit_code"] == 0
    check_totals_and_links(b.database)
