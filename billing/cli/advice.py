"""Library advice, rewritten for the command line.

A library message says what a program can pass (`orgs.create()`, `refund=False`); from the CLI
an operator can only type options, so the commands rewrite those messages here, in one place.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from billing.errors import OrgNotFound, RefundExceedsPaid, RefundFailed

# Library arguments named by refund errors, and the options of `credit-note create` for them.
_REFUND_OPTIONS = (("refund=False", "--no-refund"), ("request id", "--request-id"))


@contextlib.contextmanager
def unknown_org(org_id: str | None, database: str, *, option: str = "--org") -> Iterator[None]:
    """OrgNotFound says to check the id and --database: the library's advises orgs.create(),
    and no command creates an org."""
    try:
        yield
    except OrgNotFound:
        raise OrgNotFound(f"no org {org_id} in database {database!r}: check the id given to "
                          f"{option} and the --database") from None


@contextlib.contextmanager
def refund_options() -> Iterator[None]:
    """A refused or excessive refund advises --no-refund and --request-id, not the library's
    `refund=False` and request id."""
    try:
        yield
    except (RefundFailed, RefundExceedsPaid) as exc:
        message = exc.message
        for argument, option in _REFUND_OPTIONS:
            message = message.replace(argument, option)
        exc.message, exc.args = message, (message,)
        raise
