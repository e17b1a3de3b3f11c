"""The reconcile command's pure parts: exit codes, the progress bar, the table, the grammar."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
from bson import ObjectId

from billing.cli import exit_codes, main, parser, reconcile
from billing.cli.output import ProgressBar
from billing.errors import (
    BillingError,
    ConfigurationError,
    DatabaseUnavailable,
    InvalidInput,
    LeaseNotAcquired,
    NothingToBill,
    OrgNotFound,
    TransientDatabaseError,
)
from billing.invoice_runs import OrgResult, Outcome
from billing.reconcile_findings import Check, Finding, OrgScan, ReconcileReport
from tests.unit.factories import NOW, oid

# An address nothing listens on: a test that connected would fail (exit 3), not pass.
UNREACHABLE = "mongodb://127.0.0.1:1/?replicaSet=x&serverSelectionTimeoutMS=200"


def report(*results: str, apply: bool = True) -> ReconcileReport:
    r = ReconcileReport("run", apply, tuple(Check), (0, 1), NOW,
                        datetime(2026, 11, 1, tzinfo=UTC), orgs_scanned=2)
    r.findings = [Finding(Check.UNBILLED, oid(), "3 unbilled conversations ended in 2026-10",
                          3, action="bill them", result=result) for result in results]
    return r


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("results", "apply", "code"), [
    ((), False, 0),
    ((), True, 0),
    (("found",), False, 1),
    (("repaired", "repaired"), True, 0),
    (("repaired", "failed"), True, 1),
    (("repaired", "reported"), True, 1),
])
def test_a_report_exits_0_only_when_nothing_is_left_wrong(
    results: tuple[str, ...], apply: bool, code: int
) -> None:
    assert exit_codes.for_report(report(*results, apply=apply)) == code


@pytest.mark.parametrize(("error", "code"), [
    (LeaseNotAcquired("held"), exit_codes.LEASE_NOT_ACQUIRED),
    (InvalidInput("bad"), exit_codes.USAGE),
    (OrgNotFound("gone"), exit_codes.USAGE),
    (ConfigurationError("no"), exit_codes.UNAVAILABLE),
    (TransientDatabaseError("later"), exit_codes.UNAVAILABLE),
    (DatabaseUnavailable("gone"), exit_codes.UNAVAILABLE),
    (NothingToBill("other state conflicts"), exit_codes.ORGS_FAILED),
])
def test_errors_map_to_exit_codes(error: BillingError, code: int) -> None:
    assert exit_codes.for_error(error) == code


def test_the_help_table_lists_every_code_and_no_longer_calls_4_reserved() -> None:
    for line in ("0  OK", "1  ORGS_FAILED", "2  USAGE", "3  UNAVAILABLE",
                 "4  LEASE_NOT_ACQUIRED", "130  INTERRUPTED", "143  TERMINATED"):
        assert line in exit_codes.EPILOG
    assert "reserved" not in exit_codes.EPILOG


def test_the_bar_counts_failed_scans_and_failed_org_results() -> None:
    stream = Terminal()
    failed = Finding(Check.WRONG_TOTALS, "o2", "x", result="failed")
    with ProgressBar(stream, "repairing") as bar:
        bar(1, 4, OrgScan("o1", []))
        bar(2, 4, OrgScan("o2", [failed]))
        bar(3, 4, OrgResult("o3", Outcome.FAILED))
        bar(4, 4, OrgResult("o4", Outcome.INVOICED))

    drawn = stream.getvalue()
    assert "repairing [" in drawn and "] 1/4 orgs\r" in drawn
    assert "] 2/4 orgs, 1 failed" in drawn and drawn.endswith("] 4/4 orgs, 2 failed\n")


def test_the_bar_draws_nothing_off_a_terminal() -> None:
    stream = io.StringIO()
    with ProgressBar(stream, "checking") as bar:
        bar(1, 1, OrgScan("o1", []))
    assert stream.getvalue() == ""


def test_the_table_lists_findings_counts_and_failures() -> None:
    r = report("repaired", "failed")
    r.findings[1].error = "StateConflict: a person must decide"

    r.findings[0].ids = [str(ObjectId()) for _ in range(25)]
    r.findings[0].count = 40
    r.findings[0].summary = "40 unbilled conversations ended in 2026-10 " + "and more " * 20

    text = reconcile.render(r, {r.findings[0].org_id: "Acme Corp"})

    assert max(len(line) for line in text.splitlines()) <= 100
    assert f"[repaired] unbilled: Acme Corp (org {r.findings[0].org_id})" in text
    assert "ids (first 20 of 40): " + ", ".join(r.findings[0].ids[:2]) in text
    assert r.findings[0].ids[20] not in text
    assert "Findings: 2 unbilled, 0 dangling_link" in text and "1 outstanding" in text
    assert f"[failed] unbilled: org {r.findings[1].org_id}" in text
    assert "error: StateConflict: a person must decide" in text


def test_plurals() -> None:
    assert reconcile.plural(1, "org") == "1 org" and reconcile.plural(0, "org") == "0 orgs"


def test_checks_are_repeatable_and_default_to_all() -> None:
    args = parser.build().parse_args(["reconcile", "--check", "unbilled", "--check", "malformed"])
    assert args.checks == ["unbilled", "malformed"] and not args.apply and args.shard == "0/1"
    assert parser.build().parse_args(["reconcile"]).checks is None


@pytest.mark.parametrize(("args", "says"), [
    (["--check", "bogus"], "invalid choice"),
    (["--shard", "4/4"], "shard"),
    (["--shard", "x"], "I/N"),
    (["--org", "not-an-id"], "--org"),
])
def test_bad_arguments_exit_2_before_connecting(
    args: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--uri", UNREACHABLE, "reconcile", *args]) == exit_codes.USAGE
    err = capsys.readouterr().err
    assert err.startswith("billing: error: ") and says in err


def test_the_stripe_key_is_scrubbed_from_errors(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_secret123")

    assert main(["reconcile", "--org", "sk_test_secret123", "--json"]) == exit_codes.USAGE

    out, err = capsys.readouterr()
    assert "sk_test_secret123" not in out + err and "***" in err
