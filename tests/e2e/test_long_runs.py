"""Long CLI runs under outages and signals, as cron and Kubernetes run them: a subprocess
stopped by SIGTERM or SIGINT, killed by SIGKILL, or left without its database mid-run. Each
asserts the exit code, that exactly one JSON document was printed, and what the database holds
afterwards (nothing half-written, the audit record closed, the lease released)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId
from pymongo import MongoClient

from billing import Billing
from billing.domain.periods import last_closed_month
from tests.support.billing_data import seed_conversations
from tests.support.crash import ServerProcess
from tests.support.invariants import check_totals_and_links

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PERIOD = last_closed_month()
WAIT_S = 120  # a bound on waiting for a state the run reaches within seconds


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in {"MONGODB_URI", "BILLING_FAULTS", "STRIPE_API_KEY", "STRIPE_API_BASE"}}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return env


def start_cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "billing.cli", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=cli_env(), cwd=ROOT)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "billing.cli", *args], capture_output=True,
                          text=True, env=cli_env(), cwd=ROOT, timeout=WAIT_S, check=False)


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen[str], what: str) -> None:
    """Poll until `condition()`; fails if the process ended first (the run was too quick to
    be interrupted mid-way, which would make the test meaningless)."""
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the run ended (exit {proc.returncode}) before {what}: {err[-500:]}")
        assert time.monotonic() < deadline, f"no {what} after {WAIT_S} s"
        time.sleep(0.01)


def one_document(stdout: str) -> dict[str, Any]:
    lines = stdout.splitlines()
    assert len(lines) == 1, f"expected exactly one JSON document, got {stdout[:500]!r}"
    doc: dict[str, Any] = json.loads(lines[0])
    return doc


def seed_orgs(b: Billing, n: int, conversations: int) -> list[str]:
    """`n` orgs, each with `conversations` conversations in the last closed month."""
    ids = []
    for i in range(n):
        org = b.orgs.create(name=f"Org {i}", currency="usd", per_conversation=5,
                            per_started_minute=1)
        seed_conversations(b.database, org.id, conversations, start=PERIOD.start)
        ids.append(org.id)
    return ids


def billed_once(db: Any) -> None:
    check_totals_and_links(db)
    assert db.conversations.count_documents({"line_item_id": None}) == 0
    assert db.invoices.count_documents({"status": {"$ne": "open"}}) == 0


# ---- SIGTERM and SIGINT ----------------------------------------------------------------------


@pytest.fixture
def unbilled(client: MongoClient[dict[str, Any]], db_name: str) -> Billing:
    """40 orgs with unbilled conversations of the last closed month: enough work that a
    signal sent once the run has started lands before it ends."""
    b = Billing(client, database=db_name, transaction_retry_seconds=60)
    b.setup()
    seed_orgs(b, 40, 10)
    return b


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_mid_reconcile_apply_closes_its_audit_record_and_releases_the_lease(
    mongo_uri: str, db_name: str, unbilled: Billing, signum: int, code: int
) -> None:
    db = unbilled.database
    proc = start_cli("--uri", mongo_uri, "--database", db_name, "reconcile", "--apply",
                     "--check", "unbilled", "--json")
    # Mid-run: the audit record says running and some orgs are already repaired (invoiced).
    wait_for(lambda: db.invoices.count_documents({"status": "open"}) >= 2, proc,
             "two orgs were repaired")
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=WAIT_S)

    assert proc.returncode == code, err
    doc = one_document(out)
    assert doc["exit_code"] == code and signal.Signals(signum).name in doc["error"]
    [record] = list(db.reconciliation_runs.find({}))
    assert record["status"] == "failed" and record["finished_at"] is not None
    assert any(signal.Signals(signum).name in e for e in record["errors"]), record["errors"]
    assert db.reconciliation_leases.count_documents({}) == 0  # released
    check_totals_and_links(db)  # what was repaired stands, nothing half-written

    # The next run is not blocked by a lease: it finishes the work and records `finished`.
    rerun = run_cli("--uri", mongo_uri, "--database", db_name, "reconcile", "--apply",
                    "--check", "unbilled", "--json")
    assert rerun.returncode == 0, rerun.stderr
    assert one_document(rerun.stdout)["clean"] is True
    assert db.reconciliation_runs.count_documents({"status": "finished"}) == 1
    billed_once(db)


@pytest.mark.slow
def test_sigterm_mid_invoice_run_exits_143_and_the_rerun_bills_the_rest_once(
    mongo_uri: str, db_name: str, unbilled: Billing
) -> None:
    db = unbilled.database
    proc = start_cli("--uri", mongo_uri, "--database", db_name, "invoice", "run",
                     "--period", PERIOD.label, "--json")
    wait_for(lambda: db.invoices.count_documents({"status": "open"}) >= 2, proc,
             "two orgs were invoiced")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=WAIT_S)

    assert proc.returncode == 143, err
    doc = one_document(out)
    assert doc["exit_code"] == 143 and "SIGTERM" in doc["error"] and "rerunning is safe" in \
        doc["error"]
    assert err.count("billing: error:") == 1 and "Traceback" not in err
    check_totals_and_links(db)
    invoiced = db.invoices.count_documents({})
    assert 2 <= invoiced < 40

    rerun = run_cli("--uri", mongo_uri, "--database", db_name, "invoice", "run",
                    "--period", PERIOD.label, "--json")
    assert rerun.returncode == 0, rerun.stderr
    summary = one_document(rerun.stdout)
    assert summary["counts"]["invoiced"] + summary["counts"]["already_invoiced"] == 40
    billed_once(db)


@pytest.mark.slow
def test_a_killed_runs_audit_record_is_closed_by_the_run_that_takes_over_its_lease(
    mongo_uri: str, db_name: str, unbilled: Billing
) -> None:
    db = unbilled.database
    proc = start_cli("--uri", mongo_uri, "--database", db_name, "reconcile", "--apply",
                     "--check", "unbilled", "--json")
    wait_for(lambda: db.invoices.count_documents({"status": "open"}) >= 1, proc,
             "an org was repaired")
    proc.kill()
    proc.communicate(timeout=WAIT_S)
    [dead] = list(db.reconciliation_runs.find({}))
    assert dead["status"] == "running"  # nobody could close it

    held = run_cli("--uri", mongo_uri, "--database", db_name, "reconcile", "--apply", "--json")
    assert held.returncode == 4  # its lease is still valid: the next run waits it out
    # ... until the lease expires (here: moved to the past instead of waiting 300 s).
    db.reconciliation_leases.update_one({}, {"$set": {
        "expires_at": datetime.now(UTC) - timedelta(seconds=1)}})
    rerun = run_cli("--uri", mongo_uri, "--database", db_name, "reconcile", "--apply",
                    "--check", "unbilled", "--json")

    assert rerun.returncode == 0, rerun.stderr
    run_id = one_document(rerun.stdout)["run_id"]
    closed = db.reconciliation_runs.find_one({"_id": dead["_id"]})
    assert closed is not None and closed["status"] == "abandoned"
    assert closed["finished_at"] is not None and run_id in closed["errors"][0]
    assert db.reconciliation_runs.find_one({"_id": ObjectId(run_id)})["status"] == "finished"
    assert db.reconciliation_leases.count_documents({}) == 0
    billed_once(db)


# ---- the database stopped mid-run ----------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A SecantusDB of the test's own, in a child process the test kills by PID."""
    srv = ServerProcess(tmp_path / "db", transaction_lifetime_seconds=2)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.mark.slow
@pytest.mark.parametrize("command", [
    ["invoice", "run", "--period", PERIOD.label],
    ["reconcile", "--apply", "--check", "unbilled"],
])
def test_the_database_stopped_mid_run_ends_it_at_once_with_exit_3(
    server: ServerProcess, command: list[str]
) -> None:
    """20 orgs, the server killed after the first is billed: the run stops at the next server
    selection (1 s here), not after 19 x transaction_retry_seconds, with exit 3 and one JSON
    document; after a restart, a rerun bills every org once."""
    with MongoClient(server.uri, timeoutMS=20_000) as client:
        b = Billing(client, database="billing")
        b.setup()
        seed_orgs(b, 20, 100)
    uri = server.uri + "&serverSelectionTimeoutMS=1000"
    proc = start_cli("--uri", uri, "--database", "billing", *command, "--json")
    with MongoClient(server.uri, timeoutMS=5_000) as watcher:
        wait_for(lambda: watcher.billing.invoices.count_documents({"status": "open"}) >= 1,
                 proc, "the first org was billed")
    server.kill()
    killed_at = time.monotonic()
    out, err = proc.communicate(timeout=WAIT_S)
    took = time.monotonic() - killed_at

    assert proc.returncode == 3, err
    doc = one_document(out)
    # DatabaseUnavailable, or the lost connection that preceded it (a read outside a
    # transaction retried once by pymongo reports the first error).
    assert doc["exit_code"] == 3 and "unreachable" in doc["error"]
    assert err.count("billing: error:") == 1 and "Traceback" not in err
    # One server selection (1 s), an abort and a retry of the interrupted org; 20 orgs waiting
    # out retries each would take minutes.
    assert took < 15, f"the run took {took:.1f} s to stop"

    server.start()
    with MongoClient(server.uri, timeoutMS=20_000) as client:
        db = client.billing
        check_totals_and_links(db)  # nothing half-written: marks match committed line items
        assert db.invoices.count_documents({}) < 20
        # (reconcile could not close its audit record with the database gone: the run that
        # takes over its lease closes it, see the SIGKILL test above.)
        rerun = run_cli("--uri", server.uri, "--database", "billing", "invoice", "run",
                        "--period", PERIOD.label, "--json")
        assert rerun.returncode == 0, rerun.stderr
        billed_once(db)


# ---- one JSON document, whatever arrives after it --------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_after_the_json_document_changes_neither_output_nor_exit_code(
    tmp_path: Path, signum: int
) -> None:
    """The demo on the embedded database prints its document, then stops the database (which
    takes a while): a signal then is ignored, so there is no second (error) document and the
    exit code stays the run's."""
    env = {**cli_env(), "BILLING_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen([sys.executable, "-m", "billing.cli", "demo", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=ROOT)
    assert proc.stdout is not None
    first = proc.stdout.readline()  # blocks until the document is printed
    proc.send_signal(signum)
    rest, err = proc.communicate(timeout=WAIT_S)

    assert json.loads(first)["exit_code"] == 0
    assert rest == "", f"a second document after the first: {rest[:300]!r}"
    assert proc.returncode == 0, err
    assert "billing: error" not in err and "Traceback" not in err
