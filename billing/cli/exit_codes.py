"""Exit codes of the `billing` command, for cron jobs and operators.

    0  OK                  invoice run: every org invoiced (now or by an earlier run), or nothing
                           to bill. reconcile: nothing wrong, or every finding repaired. invoice
                           bill-late: nothing late, or --apply billed it. invoice show: shown.
                           credit-note create: the credit note shown (dry run) or issued.
                           collect: nothing due (not due yet or busy elsewhere is fine), or
                           --apply paid every invoice that was due
    1  ORGS_FAILED         invoice run: some orgs failed; the output names them and why. Rerunning
                           is safe: orgs already invoiced are not billed twice. reconcile: findings
                           remain (a dry run found some; with --apply, a repair failed or a finding
                           is for a person: result failed or reported). setup --check: the schema
                           differs from this version's data contract. invoice bill-late (dry
                           run): conversations are late; --apply bills them. credit-note
                           create: refused by the invoice's state (it would credit more than
                           is left, a draft or void invoice, a payment in flight), or Stripe
                           refused the refund (the credit note is void). collect: a dry run
                           found invoices due; with --apply, a charge was declined, is waiting
                           (3-D Secure, processing), needs a new card or failed; or an org's
                           documents could not be read (each named). Any command: an
                           unexpected error that is not billing's own (a stored document
                           billing cannot read, or a bug), named in the message
    2  USAGE               the arguments are wrong: unknown option, malformed or open period,
                           malformed id or shard, unknown --check or --org, no such invoice for
                           invoice show (any `InvalidInput` or `NotFound`)
    3  UNAVAILABLE         configuration error or database unreachable (`ConfigurationError`,
                           `DatabaseError` that stopped the whole command), or a database without
                           this version's schema (run `billing setup`); nothing more was written.
                           A run stops at the first server selection that times out
                           (`DatabaseUnavailable`): orgs done so far stand, rerunning is safe
    4  LEASE_NOT_ACQUIRED  reconcile --apply: another run holds the shard's lease, so this one
                           repaired nothing (or it lost the lease mid-run: its repairs so far
                           stand); let the other run finish, or retry later. collect --apply:
                           another collect run holds the shard's lease; nothing was charged
  130  INTERRUPTED         stopped by Ctrl-C (SIGINT); what committed stays committed, rerunning
                           is safe; reconcile --apply and collect --apply record their run
                           `failed` with the reason and release their lease first
  143  TERMINATED          stopped by SIGTERM (cron, systemd, Kubernetes), handled like Ctrl-C.
                           A run killed outright (SIGKILL) leaves its audit record `running`: the
                           next reconcile --apply (or collect --apply, for a collect run) marks
                           it `abandoned` once its lease has lapsed

Errors print one line to stderr, `billing: error: <message>`, and with --json also
`{"error": ..., "exit_code": ...}` on stdout.
"""

from __future__ import annotations

from billing.errors import (
    BillingError,
    ConfigurationError,
    DatabaseError,
    InvalidInput,
    LeaseNotAcquired,
    NotFound,
)
from billing.invoice_runs import RunSummary
from billing.reconcile_findings import ReconcileReport

OK = 0
ORGS_FAILED = 1
FINDINGS_REMAIN = ORGS_FAILED  # the same code: "look at the output, some work is left"
UNEXPECTED = ORGS_FAILED  # an error that is not a BillingError: the message names it
USAGE = 2
UNAVAILABLE = 3
LEASE_NOT_ACQUIRED = 4
INTERRUPTED = 130  # 128 + SIGINT, as shells report it
TERMINATED = 143  # 128 + SIGTERM

# `billing --help` shows the table of the docstring above, so the two cannot disagree.
EPILOG = "exit codes:\n" + (__doc__ or "").split("\n\n")[1]


def for_summary(summary: RunSummary) -> int:
    """OK when no org failed (invoiced, already invoiced or nothing to bill), else ORGS_FAILED."""
    return OK if summary.ok else ORGS_FAILED


def for_report(report: ReconcileReport) -> int:
    """OK when nothing is left wrong (no findings, or every one repaired), else
    FINDINGS_REMAIN: a dry run with findings, or failed or reported-only findings."""
    return OK if report.clean else FINDINGS_REMAIN


def for_error(exc: BillingError) -> int:
    """The exit code of an error that stopped the whole command."""
    if isinstance(exc, InvalidInput | NotFound):
        return USAGE
    if isinstance(exc, ConfigurationError | DatabaseError):
        return UNAVAILABLE
    if isinstance(exc, LeaseNotAcquired):  # a StateConflict: before the fallback
        return LEASE_NOT_ACQUIRED
    return ORGS_FAILED
