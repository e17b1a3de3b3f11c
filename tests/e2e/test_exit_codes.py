"""Operator promises of README's CLI section and exit-code table, tried where no test did:

- "Every other command except `demo` ... refuses a database that `setup` has not brought to
  this version, or a misspelt `--database`, with exit 3" (tests cover invoice run and
  reconcile only);
- "Text that is not a mongodb:// ... connection string is refused at once (... 3 for
  MONGODB_URI)";
- collect's exit codes: "0 ... collect: nothing due, or every due invoice paid"; "1 ...
  collect: a dry run found invoices due, or with --apply a charge was declined, is waiting
  (3-D Secure, processing), needs a new card or failed".
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

import pytest
from bson import ObjectId
from pymongo import MongoClient

from billing import Billing, PaymentRequiresAction
from billing.cli import connect, main
from billing.gateways import FakeGateway
from tests.e2e.test_cli import PERIOD, cli, cli_env, one_error_line
from tests.support.billing_data import closed_month_invoice

pytestmark = pytest.mark.integration

COMMANDS = [
    ["invoice", "show", str(ObjectId()), str(ObjectId())],
    ["invoice", "bill-late", "--org", str(ObjectId()), "--period", PERIOD.label],
    ["invoice", "bill-late", "--org", str(ObjectId()), "--period", PERIOD.label, "--apply"],
    ["credit-note", "create", str(ObjectId()), str(ObjectId()), "--amount", "1", "--reason",
     "duplicate", "--request-id", "r-1"],
    ["credit-note", "create", str(ObjectId()), str(ObjectId()), "--amount", "1", "--reason",
     "duplicate", "--request-id", "r-1", "--no-refund", "--apply"],
    ["collect"],
    ["events", "tail", "--org", str(ObjectId())],
    ["events", "tail", "--follow"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2] + c[-1:]))
def test_every_command_refuses_a_database_without_the_schema_with_exit_3(
        mongo_uri: str, db_name: str, client: MongoClient[dict[str, Any]],
        command: list[str]) -> None:
    try:
        result = cli("--uri", mongo_uri, "--database", db_name, *command, "--json")
    except Exception as exc:  # noqa: BLE001 - events tail --follow waiting forever
        pytest.fail(f"{command} did not end: {exc}")
    assert result.returncode == 3, (result.returncode, result.stderr)
    assert "billing setup" in one_error_line(result)
    assert json.loads(result.stdout)["exit_code"] == 3
    assert db_name not in client.list_database_names()  # nothing was written


def test_an_older_schema_version_is_refused_with_exit_3(
        mongo_uri: str, db_name: str, client: MongoClient[dict[str, Any]]) -> None:
    b = Billing(client, database=db_name)
    b.setup()
    latest = b.database.schema_migrations.find_one(sort=[("_id", -1)])
    assert latest is not None
    b.database.schema_migrations.delete_one({"_id": latest["_id"]})  # a migration pending
    for command in (["invoice", "run", "--period", PERIOD.label], *COMMANDS[:2], ["collect"]):
        result = cli("--uri", mongo_uri, "--database", db_name, *command)
        assert result.returncode == 3, (command, result.stderr)


def test_a_mongodb_uri_that_is_not_a_connection_string_exits_3_at_once() -> None:
    started = time.monotonic()
    result = cli("invoice", "run", "--period", PERIOD.label, "--json",
                 env=cli_env(MONGODB_URI="db1.example.com:27017"))
    assert result.returncode == 3 and time.monotonic() - started < 30
    assert "MONGODB_URI" in one_error_line(result)
    assert json.loads(result.stdout)["exit_code"] == 3


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code = main([*args, "--json"])
    out, _ = capsys.readouterr()
    return code, json.loads(out)


@pytest.fixture
def collect_env(mongo_uri: str, db_name: str, client: MongoClient[dict[str, Any]],
                monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    for name in ("STRIPE_API_KEY", "STRIPE_API_BASE", "MONGODB_URI", "BILLING_FAULTS"):
        monkeypatch.delenv(name, raising=False)
    fake = FakeGateway()
    b = Billing(client, database=db_name, gateway=fake)
    b.setup()
    monkeypatch.setattr(connect, "stripe_gateway", lambda: contextlib.nullcontext(fake))
    return {"b": b, "fake": fake,
            "base": ["--uri", mongo_uri, "--database", db_name, "collect"]}


def invoice(b: Billing, token: str | None) -> tuple[Any, Any]:
    return closed_month_invoice(b, name=f"Org {ObjectId()}", token=token,
                                request_id=f"r-{ObjectId()}")


def test_collect_a_dry_run_with_nothing_due_exits_0_even_if_an_attempt_waits(
        collect_env: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    b = collect_env["b"]
    org, inv = invoice(b, "pm_card_threeDSecure2Required")
    with pytest.raises(PaymentRequiresAction):
        b.invoices.pay(org.id, inv.id)  # the host's own pay(): 3-D Secure awaited
    code, doc = run(capsys, *collect_env["base"])
    assert doc["counts"]["would_charge"] == 0  # nothing is due
    assert code == 0, doc  # README: "0 ... collect: nothing due"


@pytest.mark.parametrize("token", ["pm_card_threeDSecure2Required", "pm_card_chargeCustomerFail",
                                   None])
def test_collect_apply_exits_1_when_a_charge_waits_is_declined_or_needs_a_card(
        collect_env: dict[str, Any], capsys: pytest.CaptureFixture[str],
        token: str | None) -> None:
    invoice(collect_env["b"], token)
    code, doc = run(capsys, *collect_env["base"], "--apply")
    assert code == 1 and doc["exit_code"] == 1, doc
    assert [i["result"] for i in doc["invoices"]] == [
        {"pm_card_threeDSecure2Required": "waiting", "pm_card_chargeCustomerFail": "declined",
         None: "needs_method"}[token]]
