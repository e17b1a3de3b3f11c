"""`billing credit-note create` as on-call runs it: a subprocess, its exit code, its output, and
the documents it leaves (a dry run none; --apply one credit note, however often repeated)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from bson import ObjectId
from pymongo import MongoClient

from tests.e2e.test_cli import cli, cli_env, money_text, one_error_line
from tests.e2e.test_invoice_cli import invoiced  # noqa: F401  (the fixture)
from tests.support.billing_data import dump

pytestmark = pytest.mark.integration


def credit(uri: str, db_name: str, *args: str, **env: str) -> Any:
    environment = cli_env(**env)
    environment.pop("STRIPE_API_KEY", None)
    return cli("--uri", uri, "--database", db_name, "credit-note", "create", *args,
               env=environment)


def test_dry_run_shows_the_credit_then_apply_issues_it_once(
    mongo_uri: str, db_name: str, client: MongoClient[dict[str, Any]],
    invoiced: dict[str, Any],  # noqa: F811
) -> None:
    db = client[db_name]
    theirs = invoiced["theirs"]  # open, eur, another org's
    args = (theirs.org_id, theirs.id, "--amount", "5", "--reason", "order_change",
            "--request-id", "fix-1", "--memo", "goodwill")
    before = dump(db)

    dry = credit(mongo_uri, db_name, *args)

    assert dry.returncode == 0, dry.stderr
    assert "would be issued" in dry.stdout and money_text(5, "eur") in dry.stdout
    assert f"due {money_text(theirs.total - 5, 'eur')}" in dry.stdout
    assert "--apply" in dry.stdout
    assert dump(db) == before  # a dry run writes nothing

    applied = credit(mongo_uri, db_name, *args, "--apply", "--json")

    assert applied.returncode == 0, applied.stderr
    doc = json.loads(applied.stdout)
    note = doc["credit_note"]
    assert (doc["exit_code"], doc["applied"], note["number"], note["amount"]) == (0, True, 1, 5)
    assert (note["settlement"], note["memo"]) == ("amount_due", "goodwill")
    assert (doc["invoice"]["amount_credited"], doc["invoice"]["amount_due"]) == (
        5, theirs.total - 5)
    stored = db.invoices.find_one({"_id": ObjectId(theirs.id)})
    assert stored is not None and (stored["total"], stored["amount_credited"]) == (
        theirs.total, 5)  # the invoice's total never changes
    after = dump(db)

    again = credit(mongo_uri, db_name, *args, "--apply", "--json")

    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["credit_note"]["id"] == note["id"]
    assert dump(db) == after  # the same request id issues nothing more
    shown = cli("--uri", mongo_uri, "--database", db_name, "invoice", "show", theirs.org_id,
                theirs.id, "--json")
    assert [n["id"] for n in json.loads(shown.stdout)["credit_notes"]] == [note["id"]]


def test_a_credit_beyond_what_is_left_is_refused_and_writes_nothing(
    mongo_uri: str, db_name: str, client: MongoClient[dict[str, Any]],
    invoiced: dict[str, Any],  # noqa: F811
) -> None:
    db = client[db_name]
    theirs = invoiced["theirs"]
    before = dump(db)

    for apply in ([], ["--apply"]):
        refused = credit(mongo_uri, db_name, theirs.org_id, theirs.id, "--amount",
                         str(theirs.total + 1), "--reason", "duplicate", "--request-id", "big",
                         *apply)
        assert refused.returncode == 1
        assert "left to credit" in one_error_line(refused)
    for bad in (["--amount", "-5"], ["--amount", "1.50"], ["--line", "nothex=5"],
                ["--amount", "\u00b2"], ["--amount", "\u0661\u0662"]):  # digits, not ASCII
        wrong = credit(mongo_uri, db_name, theirs.org_id, theirs.id, *bad, "--reason",
                       "duplicate", "--request-id", "bad", "--apply")
        assert wrong.returncode == 2, (bad, wrong.stderr)
    assert dump(db) == before


def test_a_paid_invoice_is_refunded_only_with_stripe_or_settled_outside_it(
    mongo_uri: str, db_name: str, client: MongoClient[dict[str, Any]],
    invoiced: dict[str, Any],  # noqa: F811
) -> None:
    db = client[db_name]
    first = invoiced["first"]  # paid
    args = (first.org_id, first.id, "--amount", str(first.total), "--reason",
            "product_unsatisfactory", "--request-id", "refund-1")
    before = dump(db)

    refused = credit(mongo_uri, db_name, *args, "--apply")

    assert refused.returncode == 3
    assert "STRIPE_API_KEY" in one_error_line(refused) and "--no-refund" in refused.stderr
    assert dump(db) == before

    outside = credit(mongo_uri, db_name, *args, "--no-refund", "--apply", "--json")

    assert outside.returncode == 0, outside.stderr
    note = json.loads(outside.stdout)["credit_note"]
    assert (note["settlement"], note["refund"], note["amount"]) == ("out_of_band", None,
                                                                    first.total)


def test_a_refund_stripe_refuses_advises_the_cli_options_not_the_library_arguments(
    mongo_uri: str, db_name: str, invoiced: dict[str, Any],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    import contextlib

    import billing.cli
    from billing import PaymentError
    from billing.cli import connect

    for name in ("MONGODB_URI", "STRIPE_API_KEY", "STRIPE_API_BASE", "BILLING_FAULTS"):
        monkeypatch.delenv(name, raising=False)
    first = invoiced["first"]  # paid through the fake gateway
    fake = invoiced["gateway"]
    fake.fail_next("refund", PaymentError("refused", code="charge_disputed"))
    monkeypatch.setattr(connect, "stripe_gateway", lambda: contextlib.nullcontext(fake))
    capsys.readouterr()

    code = billing.cli.main(["--uri", mongo_uri, "--database", db_name, "credit-note", "create",
                             first.org_id, first.id, "--amount", "50", "--reason", "duplicate",
                             "--request-id", "cn-1", "--apply"])

    err = capsys.readouterr().err
    assert code == 1 and "did not refund" in err and fake.refunded(first.id) == 0, err
    # The command has --no-refund and --request-id; refund=False is the library's keyword.
    assert "refund=False" not in err and "--no-refund" in err and "--request-id" in err, err
