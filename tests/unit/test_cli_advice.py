"""The CLI's rewrite of library advice: an operator is told the options to type, not the
library's keyword arguments."""

from __future__ import annotations

import pytest

from billing.cli import advice
from billing.errors import OrgNotFound, RefundExceedsPaid
from billing.plans import require_org
from tests.unit.test_credit_note_plans import World, credit


def test_a_refund_beyond_what_was_paid_advises_no_refund_not_refund_false() -> None:
    w = World([1000])
    w.pay()
    w.payments = [w.payments[0].model_copy(update={"amount": 400})]  # paid partly elsewhere

    with pytest.raises(RefundExceedsPaid) as caught, advice.refund_options():
        w.create(credit(401))

    assert "--no-refund" in caught.value.message and "refund=False" not in str(caught.value)
    assert "400" in caught.value.message  # the library's figures are kept


def test_an_unknown_org_advises_checking_the_option_and_database() -> None:
    with pytest.raises(OrgNotFound) as caught, advice.unknown_org("a" * 24, "billing"):
        require_org(None, "a" * 24)  # type: ignore[arg-type]

    assert caught.value.message == (f"no org {'a' * 24} in database 'billing': check the id "
                                    "given to --org and the --database")
