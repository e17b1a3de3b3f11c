"""The `billing` command as operators and cron run it: a subprocess, its exit code, its output
and the documents it leaves in the database."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId
from pymongo import MongoClient

import billing.cli
from billing import Billing, Org
from billing.domain.periods import last_closed_month
from tests.support.billing_data import dump, expected_total, seed_conversations
from tests.support.invariants import check_totals_and_links

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "s3cretPW"
UNREACHABLE = f"mongodb://user:{PASSWORD}@127.0.0.1:1/?replicaSet=x&serverSelectionTimeoutMS=500"
PERIOD = last_closed_month()
OPEN_MONTH = PERIOD.end.strftime("%Y-%m")  # the current month: not closed yet


def cli_env(**extra: str) -> dict[str, str]:
    """This environment without MONGODB_URI or fault points, with `billing` importable."""
    env = {k: v for k, v in os.environ.items() if k not in {"MONGODB_URI", "BILLING_FAULTS"}}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env.update(extra)
    return env


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "billing.cli", *args], capture_output=True, text=True,
        timeout=120, env=env or cli_env(), cwd=ROOT, check=False,
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The error line on stderr; fails on tracebacks or more output."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("billing: error: "), result.stderr
    return lines[0]


def money_text(total: int, currency: str) -> str:
    """Independent of billing.cli.money: jpy has no decimals, usd and eur two."""
    if currency == "jpy":
        return f"{total:,} JPY"
    return f"{total // 100:,}.{total % 100:02d} {currency.upper()}"


@pytest.fixture
def seeded(client: MongoClient[dict[str, Any]], db_name: str) -> dict[str, Any]:
    """usd and eur orgs with conversations in the last closed month, a gbp org without; four
    usd conversations in the open month (never billed by a run for the closed one)."""
    b = Billing(client, database=db_name, transaction_retry_seconds=60)
    b.setup()
    usd = b.orgs.create(name="Usd Org", currency="usd", per_conversation=50, per_started_minute=10)
    eur = b.orgs.create(name="Eur Org", currency="eur", per_conversation=7, per_started_minute=3)
    idle = b.orgs.create(name="Idle Org", currency="gbp", per_conversation=5, per_started_minute=1)
    usd_docs = seed_conversations(b.database, usd.id, 30, start=PERIOD.start)
    eur_docs = seed_conversations(b.database, eur.id, 12, start=PERIOD.start + timedelta(days=3),
                                  seconds=200)
    seed_conversations(b.database, usd.id, 4, start=PERIOD.end)
    return {"billing": b, "usd": usd, "eur": eur, "idle": idle,
            "totals": {"usd": expected_total(usd_docs, 50, 10),
                       "eur": expected_total(eur_docs, 7, 3)}}


def run_json(uri: str, db_name: str, *args: str) -> tuple[int, dict[str, Any]]:
    result = cli("--uri", uri, "--database", db_name, "invoice", "run", "--period", PERIOD.label,
                 "--json", *args)
    assert "invoicing" not in result.stderr  # no progress bar when stderr is not a terminal
    return result.returncode, json.loads(result.stdout)  # exactly one JSON document


def test_demo_prints_totals_and_stores_invoices_equal_to_their_line_items(
    mongo_uri: str, db_name: str, client: MongoClient[dict[str, Any]]
) -> None:
    first = cli("--uri", mongo_uri, "--database", db_name, "demo")

    assert first.returncode == 0, first.stderr
    db = client.get_database(db_name)
    invoices = list(db.invoices.find({}))
    assert sorted(i["currency"] for i in invoices) == ["eur", "jpy", "usd"]
    assert all(i["status"] == "open" and i["number"] == 1 for i in invoices)
    check_totals_and_links(db)  # totals equal their line items' sum; conversations linked right
    for inv in invoices:
        assert money_text(inv["total"], inv["currency"]) in first.stdout
    # The malformed conversation is the only one left unbilled, and it is reported.
    unbilled = list(db.conversations.find({"line_item_id": None}))
    assert len(unbilled) == 1 and isinstance(unbilled[0]["started_at"], str)
    assert "malformed" in first.stdout and sum(i["skipped_malformed"] for i in invoices) == 1

    second = cli("--uri", mongo_uri, "--database", db_name, "demo", "--json")

    assert second.returncode == 0, second.stderr
    doc = json.loads(second.stdout)
    assert doc["exit_code"] == 0 and doc["counts"]["invoiced"] == 3
    # Reseeded, not billed on top: the same three invoices' totals again.
    assert db.invoices.count_documents({}) == 3
    assert doc["invoiced_totals"] == {i["currency"]: i["total"] for i in invoices}


def test_demo_refuses_a_database_it_did_not_write(mongo_uri: str, db_name: str,
                                                  client: MongoClient[dict[str, Any]]) -> None:
    client.get_database(db_name).precious.insert_one({"keep": True})

    result = cli("--uri", mongo_uri, "--database", db_name, "demo")

    assert result.returncode == 2
    assert "--database" in one_error_line(result)
    assert client.get_database(db_name).precious.count_documents({}) == 1


def test_invoice_run_bills_once_and_a_second_run_bills_nothing(
    mongo_uri: str, db_name: str, seeded: dict[str, Any]
) -> None:
    db = seeded["billing"].database

    code, doc = run_json(mongo_uri, db_name)

    assert code == 0 and doc["exit_code"] == 0 and doc["ok"] is True
    assert doc["period"] == PERIOD.label and doc["orgs"] == 3
    assert doc["counts"] == {"invoiced": 2, "already_invoiced": 0, "nothing_to_bill": 1,
                             "failed": 0}
    assert doc["invoiced_totals"] == seeded["totals"]
    assert db.conversations.count_documents({"line_item_id": {"$ne": None}}) == 42
    assert db.conversations.count_documents({"line_item_id": None}) == 4  # the open month's
    check_totals_and_links(db)
    billed = dump(db)

    code, doc = run_json(mongo_uri, db_name)

    assert code == 0 and doc["exit_code"] == 0
    assert doc["counts"] == {"invoiced": 0, "already_invoiced": 2, "nothing_to_bill": 1,
                             "failed": 0}
    assert doc["invoiced_totals"] == {}
    assert db.invoices.count_documents({}) == 2
    assert db.conversations.count_documents({"line_item_id": {"$ne": None}}) == 42
    assert dump(db) == billed  # nothing written at all


def test_invoice_run_for_one_org_bills_only_that_org(mongo_uri: str, db_name: str,
                                                     seeded: dict[str, Any]) -> None:
    usd: Org = seeded["usd"]

    code, doc = run_json(mongo_uri, db_name, "--org", usd.id)

    assert code == 0 and doc["orgs"] == 1
    assert [(r["org_id"], r["outcome"]) for r in doc["results"]] == [(usd.id, "invoiced")]
    db = seeded["billing"].database
    assert db.invoices.distinct("org_id") == [ObjectId(usd.id)]


def test_a_failing_org_gives_exit_1_and_a_rerun_after_the_fix_bills_it(
    mongo_uri: str, db_name: str, seeded: dict[str, Any]
) -> None:
    b: Billing = seeded["billing"]
    eur: Org = seeded["eur"]
    # A draft in eur, then the org moves to chf and a new conversation arrives: billing it onto
    # the eur draft is refused (CurrencyMismatch), the other orgs go on.
    b.invoices.create_for_period(eur.id, PERIOD.start, PERIOD.end, finalize=False)
    b.database.orgs.update_one({"_id": ObjectId(eur.id)}, {"$set": {"currency": "chf"}})
    seed_conversations(b.database, eur.id, 1, start=PERIOD.start + timedelta(days=9))

    table = cli("--uri", mongo_uri, "--database", db_name, "invoice", "run",
                "--period", PERIOD.label)

    assert table.returncode == 1, table.stderr
    assert "FAILED Eur Org" in table.stdout and "CurrencyMismatch" in table.stdout
    assert money_text(seeded["totals"]["usd"], "usd") in table.stdout
    code, doc = run_json(mongo_uri, db_name)
    assert code == 1 and doc["exit_code"] == 1 and doc["ok"] is False
    failed = [r for r in doc["results"] if r["outcome"] == "failed"]
    assert [r["org_id"] for r in failed] == [eur.id] and "CurrencyMismatch" in failed[0]["error"]
    assert doc["counts"]["already_invoiced"] == 1  # usd, by the table run

    b.database.orgs.update_one({"_id": ObjectId(eur.id)}, {"$set": {"currency": "eur"}})
    code, doc = run_json(mongo_uri, db_name)

    assert code == 0 and doc["counts"]["invoiced"] == 1
    invoice = b.database.invoices.find_one({"org_id": ObjectId(eur.id)})
    assert invoice is not None and invoice["status"] == "open" and invoice["conversations"] == 13
    check_totals_and_links(b.database)


@pytest.mark.parametrize(("args", "says"), [
    (["--period", OPEN_MONTH], "future"),
    (["--period", "2026-13"], "not a month"),
    (["--period", PERIOD.label, "--org", '{"$ne": null}'], "--org"),
    (["--period", PERIOD.label, "--org", str(ObjectId())], "check the id given to --org"),
])
def test_bad_arguments_give_exit_2_and_change_nothing(
    mongo_uri: str, db_name: str, seeded: dict[str, Any], args: list[str], says: str
) -> None:
    before = dump(seeded["billing"].database)

    result = cli("--uri", mongo_uri, "--database", db_name, "invoice", "run", *args)
    as_json = cli("--uri", mongo_uri, "--database", db_name, "invoice", "run", *args, "--json")

    assert result.returncode == 2 and as_json.returncode == 2
    assert says in one_error_line(result) and result.stdout == ""
    doc = json.loads(as_json.stdout)
    assert doc["exit_code"] == 2 and says in doc["error"]
    assert dump(seeded["billing"].database) == before


@pytest.mark.parametrize("args", [
    [],
    ["invoice", "run"],  # --period is required
    ["invoice", "run", "--period", "2026-10", "--bogus"],
    ["--database", "a/b", "invoice", "run", "--period", "2026-10"],
    # Not a connection string: said at once, not "unreachable" after a host lookup and timeout.
    ["invoice", "run", "--period", "2026-10", "--uri", "not-a-uri"],
    ["--uri", "localhost:27017", "reconcile"],
    ["--uri", "", "demo"],
])
def test_usage_errors_give_exit_2_without_connecting(args: list[str]) -> None:
    # The unreachable URI would cost a timeout and exit 3 if anything tried to connect.
    result = cli("--uri", UNREACHABLE, *args)

    assert result.returncode == 2
    one_error_line(result)


EVERY_COMMAND = [
    ["setup"], ["setup", "--check"], ["demo"], ["invoice", "run", "--period", PERIOD.label],
    ["invoice", "show", str(ObjectId()), str(ObjectId())],
    ["invoice", "bill-late", "--org", str(ObjectId()), "--period", PERIOD.label],
    ["credit-note", "create", str(ObjectId()), str(ObjectId()), "--amount", "1", "--reason",
     "duplicate", "--request-id", "r-1"],
    ["reconcile"], ["collect"], ["events", "tail", "--org", str(ObjectId())],
]


@pytest.mark.parametrize("command", EVERY_COMMAND, ids=lambda c: " ".join(c[:2]))
@pytest.mark.parametrize("where", ["before", "after"])
def test_an_empty_database_name_is_refused_not_replaced_by_the_default(
        command: list[str], where: str) -> None:
    # e.g. `scripts/cron-nightly --database "$BILLING_DB"` with the variable unset: the default
    # database ("billing") must not be billed, collected or set up instead. Exit 2 against an
    # unreachable server: refused before anything connected.
    args = ["--database", "", *command] if where == "before" else [*command, "--database", ""]

    result = cli("--uri", UNREACHABLE, *args, "--json")

    assert result.returncode == 2, result.stderr
    assert "--database '' is not a valid database name" in one_error_line(result)
    assert json.loads(result.stdout)["exit_code"] == 2


def test_cron_nightly_with_an_empty_database_name_stops_at_the_invoice_run() -> None:
    result = subprocess.run([str(ROOT / "scripts" / "cron-nightly"), "--uri", UNREACHABLE,
                             "--database", ""], capture_output=True, text=True, timeout=120,
                            env=cli_env(STRIPE_API_KEY="sk_test_x"), check=False)

    assert result.returncode == 2
    assert [json.loads(line)["exit_code"] for line in result.stdout.splitlines()] == [2]


@pytest.mark.parametrize("how", ["--uri", "MONGODB_URI", "malformed"])
def test_unreachable_database_gives_exit_3_and_never_shows_the_password(how: str) -> None:
    uri = f"mongodb://user:{PASSWORD}@127.0.0.1:port/" if how == "malformed" else UNREACHABLE
    given = ["--uri", uri] if how != "MONGODB_URI" else []
    env = cli_env(MONGODB_URI=uri) if how == "MONGODB_URI" else None
    started = time.monotonic()

    result = cli(*given, "invoice", "run", "--period", PERIOD.label, "--json", env=env)

    assert result.returncode == 3
    assert time.monotonic() - started < 60
    one_error_line(result)
    assert json.loads(result.stdout)["exit_code"] == 3
    assert PASSWORD not in result.stdout + result.stderr


def test_a_uri_echoed_in_a_usage_error_is_scrubbed() -> None:
    result = cli("invoice", "run", "--period", PERIOD.label, UNREACHABLE, "--json")

    assert result.returncode == 2
    assert "unrecognized arguments" in one_error_line(result)
    assert PASSWORD not in result.stdout + result.stderr
    assert json.loads(result.stdout)["exit_code"] == 2


def test_an_unexpected_error_is_one_scrubbed_line_and_the_json_document_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from billing.cli import invoice_show

    def broken(args: Any) -> int:
        # The password would straddle the cut at 500 characters.
        raise RuntimeError("x" * 465 + f" cannot use {UNREACHABLE}\nsecond line")

    monkeypatch.setattr(invoice_show, "main", broken)
    monkeypatch.delenv("MONGODB_URI", raising=False)

    code = billing.cli.main(["--uri", UNREACHABLE, "invoice", "show", str(ObjectId()),
                             str(ObjectId()), "--json"])

    out, err = capsys.readouterr()
    assert code == 1 and "Traceback" not in err
    [line] = err.splitlines()
    assert line.startswith("billing: error: unexpected RuntimeError: ") and len(line) < 1000
    assert PASSWORD[:5] not in out + err
    assert json.loads(out) == {"error": line.removeprefix("billing: error: "), "exit_code": 1}


def test_cron_nightly_invoices_the_last_closed_month_as_a_json_line(
    mongo_uri: str, db_name: str, seeded: dict[str, Any]
) -> None:
    def nightly(uri: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(ROOT / "scripts" / "cron-nightly"), "--uri", uri,
                               "--database", db_name], capture_output=True, text=True,
                              timeout=120, env=cli_env(), check=False)

    ok, down = nightly(mongo_uri), nightly(UNREACHABLE)

    assert ok.returncode == 0, ok.stderr
    line, reconciled = ok.stdout.splitlines()  # then reconciliation's (test_reconcile_cli.py)
    doc = json.loads(line)
    assert doc["period"] == PERIOD.label and doc["counts"]["invoiced"] == 2
    assert json.loads(reconciled)["exit_code"] == 0
    # Unreachable: the invoice run's error only; reconciliation would fail the same way.
    assert down.returncode == 3 and json.loads(down.stdout)["exit_code"] == 3


def test_help_lists_the_exit_codes() -> None:
    result = cli("--help")

    assert result.returncode == 0
    for line in ("0  OK", "1  ORGS_FAILED", "2  USAGE", "3  UNAVAILABLE", "4  LEASE_NOT_ACQUIRED",
                 "130  INTERRUPTED", "143  TERMINATED"):
        assert line in result.stdout


def test_progress_bar_is_drawn_on_a_terminal(mongo_uri: str, db_name: str,
                                             seeded: dict[str, Any]) -> None:
    main, secondary = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "billing.cli", "--uri", mongo_uri, "--database", db_name,
             "invoice", "run", "--period", PERIOD.label],
            stdout=subprocess.PIPE, stderr=secondary, text=True, env=cli_env(), cwd=ROOT)
        os.close(secondary)
        drawn = b""
        while True:
            try:
                chunk = os.read(main, 4096)
            except OSError:  # EIO: the terminal's last writer has gone
                break
            if not chunk:
                break
            drawn += chunk
        stdout, _ = proc.communicate(timeout=120)
    finally:
        os.close(main)

    assert proc.returncode == 0
    assert f"invoicing {PERIOD.label} [".encode() in drawn and b"] 3/3 orgs" in drawn
    assert "Usd Org" in stdout and "invoicing" not in stdout  # the bar is on stderr only


@pytest.mark.slow
def test_without_a_uri_the_demo_runs_on_the_embedded_database(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"

    result = cli("demo", "--json", env=cli_env(BILLING_DATA_DIR=str(data_dir)))

    assert result.returncode == 0, result.stderr
    assert "started the embedded database" in result.stderr and str(data_dir) in result.stderr
    doc = json.loads(result.stdout)
    assert doc["counts"]["invoiced"] == 3 and doc["seeded"]["database"] == "billing_demo"
    assert any(data_dir.iterdir())

