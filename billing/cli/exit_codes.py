"""Exit codes of the `billing` command, for cron jobs and operators.

    0  OK                  every org invoiced (now or by an earlier run), or nothing to bill
    1  ORGS_FAILED         some orgs failed; the output names them and why. Rerunning is safe:
                           orgs already invoiced are not billed twice
    2  USAGE               the arguments are wrong: unknown option, malformed or open period,
                           malformed id, unknown --org (any `InvalidInput` or `NotFound`)
    3  UNAVAILABLE         configuration error or database unreachable (`ConfigurationError`,
                           `DatabaseError` that stopped the whole command); nothing more was written
    4  LEASE_NOT_ACQUIRED  reserved: another process holds the reconciliation lease (not used yet)
  130  INTERRUPTED         stopped by Ctrl-C; what committed stays committed, rerunning is safe

Errors print one line to stderr, `billing: error: <message>`, and with --json also
`{"error": ..., "exit_code": ...}` on stdout.
"""

from __future__ import annotations

from billing.errors import BillingError, ConfigurationError, DatabaseError, InvalidInput, NotFound
from billing.runs import RunSummary

OK = 0
ORGS_FAILED = 1
USAGE = 2
UNAVAILABLE = 3
LEASE_NOT_ACQUIRED = 4  # reserved for reconciliation
INTERRUPTED = 130  # 128 + SIGINT, as shells report it

# `billing --help` shows the table of the docstring above, so the two cannot disagree.
EPILOG = "exit codes:\n" + (__doc__ or "").split("\n\n")[1]


def for_summary(summary: RunSummary) -> int:
    """OK when no org failed (invoiced, already invoiced or nothing to bill), else ORGS_FAILED."""
    return OK if summary.ok else ORGS_FAILED


def for_error(exc: BillingError) -> int:
    """The exit code of an error that stopped the whole command."""
    if isinstance(exc, InvalidInput | NotFound):
        return USAGE
    if isinstance(exc, ConfigurationError | DatabaseError):
        return UNAVAILABLE
    return ORGS_FAILED
