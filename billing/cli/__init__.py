"""The `billing` command: parse, dispatch to a command module, map errors to exit codes.

    billing [--uri URI] [--database NAME] setup [--check | --shard] [--json]
    billing [--uri URI] [--database NAME] demo [--json]
    billing [--uri URI] [--database NAME] invoice run --period YYYY-MM [--org ID] [--json]
    billing [--uri URI] [--database NAME] invoice show ORG INVOICE [--json]
    billing [--uri URI] [--database NAME] invoice bill-late --org ID --period YYYY-MM [--apply]
                                                            [--json]
    billing [--uri URI] [--database NAME] reconcile [--apply] [--org ID] [--check KIND ...]
                                                    [--shard I/N] [--json]
    billing [--uri URI] [--database NAME] collect [--apply] [--org ID] [--shard I/N] [--json]
    billing [--uri URI] [--database NAME] events tail (--org ID [--after N] [--limit N]
                                                       | --follow [--org ID]) [--json]

Exit codes are listed in `billing.cli.exit_codes` and in `billing --help`. `reconcile` reads
Stripe for its payment_method check when $STRIPE_API_KEY is set ($STRIPE_API_BASE: another API
address, e.g. a localstripe).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from pymongo.errors import PyMongoError

from billing.adapters.mongo_errors import translate
from billing.cli import connect, exit_codes, parser, signals
from billing.cli.output import emit_json
from billing.errors import BillingError

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command in `argv` (default: sys.argv[1:]) and return its exit code.

    Errors become one line on stderr (and a JSON document on stdout with --json), never a
    traceback, and never a password from a connection string or the Stripe key.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in argv
    secrets = sorted({*connect.secrets_in([*argv, os.environ.get("MONGODB_URI", "")]),
                      *connect.stripe_key()}, key=len, reverse=True)
    try:
        args = parser.build().parse_args(argv)
    except parser.UsageError as exc:
        return _fail(str(exc), exit_codes.USAGE, as_json=as_json, secrets=secrets)
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else exit_codes.USAGE
    as_json = bool(getattr(args, "json", False))
    with signals.handled():  # SIGTERM stops a command as Ctrl-C does
        try:
            code: int = args.handler(args)
            return code
        except PyMongoError as exc:  # a direct database call of a command, e.g. the demo's seeding
            error = translate(exc)
            return _fail(error.message, exit_codes.for_error(error), as_json=as_json,
                         secrets=secrets)
        except BillingError as exc:
            return _fail(exc.message, exit_codes.for_error(exc), as_json=as_json,
                         secrets=secrets)
        except KeyboardInterrupt as exc:  # Ctrl-C, or signals.Stopped by SIGTERM or SIGINT
            code = exc.exit_code if isinstance(exc, signals.Stopped) else exit_codes.INTERRUPTED
            return _fail(f"{exc or 'interrupted'}; what was committed stays, rerunning is safe",
                         code, as_json=as_json, secrets=secrets)
        except Exception as exc:  # not a billing error: e.g. a stored document it cannot read
            text = _short(connect.scrub(str(exc), secrets))  # scrubbed before it is cut
            return _fail(f"unexpected {type(exc).__name__}: {text} (a stored "
                         "document billing cannot read, or a bug in billing); what was "
                         "committed before it stays", exit_codes.UNEXPECTED, as_json=as_json,
                         secrets=secrets)


def _short(text: str, limit: int = 500) -> str:
    """A message cut to `limit` characters: a validation error lists every field it checked."""
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _fail(message: str, code: int, *, as_json: bool, secrets: Sequence[str]) -> int:
    signals.outcome_shown()
    message = connect.scrub(" ".join(message.split()), secrets)  # one line
    print(f"billing: error: {message}", file=sys.stderr, flush=True)
    if as_json:
        emit_json({"error": message, "exit_code": code}, sys.stdout)
    return code
