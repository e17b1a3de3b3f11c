"""`billing setup` from the command line: what it changed, drift with --check (exit 1), and
every other command refusing a database setup has not prepared (exit 3, naming the command)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pymongo import MongoClient

from billing import Billing
from billing._sync.migrations import VERSION
from tests.e2e.test_cli import PERIOD, cli, one_error_line
from tests.support.billing_data import dump

pytestmark = pytest.mark.integration


def test_commands_refuse_a_database_without_the_schema(
    mongo_uri: str, db_name: str, client: MongoClient[dict[str, Any]]
) -> None:
    for args in (["invoice", "run", "--period", PERIOD.label], ["reconcile"],
                 ["reconcile", "--apply"]):
        result = cli("--uri", mongo_uri, "--database", db_name, *args)
        assert result.returncode == 3, (args, result.stderr)
        assert "billing setup" in one_error_line(result)
    assert db_name not in client.list_database_names()  # nothing was written


def test_setup_then_check_then_drift(mongo_uri: str, db_name: str,
                                     client: MongoClient[dict[str, Any]]) -> None:
    check = cli("--uri", mongo_uri, "--database", db_name, "setup", "--check", "--json")
    assert check.returncode == 1, check.stderr
    doc = json.loads(check.stdout)
    assert doc["mode"] == "check" and doc["schema_version"] == 0 and not doc["current"]
    assert db_name not in client.list_database_names()  # --check writes nothing

    first = cli("--uri", mongo_uri, "--database", db_name, "setup")
    assert first.returncode == 0, first.stderr
    assert f"now at schema version {VERSION}" in first.stdout
    assert "created index invoices.one_per_period" in first.stdout
    b = Billing(client, database=db_name)
    before = dump(b.database)
    again = cli("--uri", mongo_uri, "--database", db_name, "setup", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["changes"] == []
    assert dump(b.database) == before

    ok = cli("--uri", mongo_uri, "--database", db_name, "setup", "--check")
    assert ok.returncode == 0 and "current" in ok.stdout, ok.stdout
    run = cli("--uri", mongo_uri, "--database", db_name, "invoice", "run", "--period",
              PERIOD.label, "--json")
    assert run.returncode == 0, run.stderr

    client[db_name].invoices.drop_index("one_per_period")
    drift = cli("--uri", mongo_uri, "--database", db_name, "setup", "--check")
    assert drift.returncode == 1 and "create index invoices.one_per_period" in drift.stdout


def test_setup_json_says_current_once_setup_has_made_the_database_current(
    mongo_uri: str, db_name: str, client: MongoClient[dict[str, Any]]
) -> None:
    first = cli("--uri", mongo_uri, "--database", db_name, "setup", "--json")
    check = cli("--uri", mongo_uri, "--database", db_name, "setup", "--check", "--json")

    done = json.loads(first.stdout)
    assert first.returncode == 0 and done["changes"] and done["schema_version"] == VERSION
    # The same database, in the same state: current after setup as for --check.
    assert done["current"] is True and json.loads(check.stdout)["current"] is True

    client[db_name].invoices.drop_index("one_per_period")
    repaired = json.loads(cli("--uri", mongo_uri, "--database", db_name, "setup",
                              "--json").stdout)
    assert repaired["changes"] == ["created index invoices.one_per_period"]
    assert repaired["current"] is True


def test_shard_needs_a_mongos(mongo_uri: str, db_name: str) -> None:
    result = cli("--uri", mongo_uri, "--database", db_name, "setup", "--shard")
    assert result.returncode == 3 and "mongos" in one_error_line(result)
    both = cli("--uri", mongo_uri, "--database", db_name, "setup", "--shard", "--check")
    assert both.returncode == 2
