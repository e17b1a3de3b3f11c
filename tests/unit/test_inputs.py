"""Public inputs fail with typed billing errors, never pydantic's ValidationError."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.domain.inputs import MAX_TEXT, NewConversation, NewLineItem, NewOrg
from billing.errors import BillingError, InvalidInput, InvalidMoney, InvalidPeriod

T0 = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)
ORG = {"name": "Acme", "currency": "usd", "per_conversation": 10, "per_started_minute": 3}
CONV = {"started_at": T0, "ended_at": T0 + timedelta(seconds=61)}
ITEM = {"description": "Onboarding", "quantity": 1, "unit_amount": 5000}
INJECTION = {"$ne": None}


def exactly(expected: type[BillingError], model: Any, **values: Any) -> BillingError:
    with pytest.raises(BillingError) as info:
        model.parse(**values)
    assert type(info.value) is expected, info.value
    return info.value


def test_valid_inputs_are_normalised() -> None:
    org = NewOrg.parse(**{**ORG, "currency": "EUR"})
    assert (org.name, org.currency, org.per_conversation) == ("Acme", "eur", 10)
    conv = NewConversation.parse(
        started_at=datetime(2026, 10, 1, 14, 0, 0, 123_456, tzinfo=timezone(timedelta(hours=2))),
        ended_at=T0 + timedelta(minutes=1), external_id="call-1")
    assert conv.started_at == datetime(2026, 10, 1, 12, 0, 0, 123_000, tzinfo=UTC)
    assert conv.span == (conv.started_at, conv.ended_at) and conv.external_id == "call-1"
    assert NewConversation.parse(**CONV).external_id is None
    item = NewLineItem.parse(**ITEM, currency="GBP")
    assert (item.quantity, item.unit_amount, item.currency) == (1, 5000, "gbp")
    assert NewLineItem.parse(**ITEM).currency is None


@pytest.mark.parametrize("field, value", [
    ("per_conversation", 10.0), ("per_conversation", float("nan")), ("per_conversation", True),
    ("per_started_minute", -1), ("per_started_minute", 2**63), ("per_conversation", "10"),
    ("per_conversation", Decimal("0.10")), ("per_conversation", None),
    ("currency", "dollars"), ("currency", INJECTION), ("currency", None),
])
def test_new_org_money_errors_are_invalid_money(field: str, value: Any) -> None:
    error = exactly(InvalidMoney, NewOrg, **{**ORG, field: value})
    assert error.message.startswith(f"{field}: ")


@pytest.mark.parametrize("value", [INJECTION, "", "   ", "x" * (MAX_TEXT + 1), "Ac\x00me", None,
                                   42, ["Acme"]])
def test_new_org_name_must_be_a_short_plain_string(value: Any) -> None:
    error = exactly(InvalidInput, NewOrg, **{**ORG, "name": value})
    assert error.message.startswith("name: ")


def test_the_longest_text_is_accepted() -> None:
    assert NewOrg.parse(**{**ORG, "name": "x" * MAX_TEXT}).name == "x" * MAX_TEXT


def test_extra_and_missing_fields_are_invalid_input() -> None:
    exactly(InvalidInput, NewOrg, **ORG, admin=True)
    exactly(InvalidInput, NewOrg, **{**ORG, "$where": "1"})
    exactly(InvalidInput, NewConversation, **CONV, line_item_id=None)
    exactly(InvalidInput, NewLineItem, **ITEM, amount=5000)
    missing = {k: v for k, v in ORG.items() if k != "currency"}
    assert "currency" in exactly(InvalidInput, NewOrg, **missing).message


@pytest.mark.parametrize("field, value", [
    ("started_at", datetime(2026, 10, 1, 12, 0)), ("ended_at", "2026-10-01T12:01:00Z"),
    ("started_at", INJECTION), ("ended_at", None), ("started_at", 1_790_000_000),
])
def test_new_conversation_time_errors_are_invalid_period(field: str, value: Any) -> None:
    error = exactly(InvalidPeriod, NewConversation, **{**CONV, field: value})
    assert error.message.startswith(f"{field}: ")


def test_a_conversation_cannot_end_before_it_starts() -> None:
    error = exactly(InvalidInput, NewConversation, started_at=T0,
                    ended_at=T0 - timedelta(milliseconds=1))
    assert "before" in error.message
    same = NewConversation.parse(started_at=T0, ended_at=T0)
    assert same.started_at == same.ended_at


@pytest.mark.parametrize("value", [INJECTION, "", "x" * (MAX_TEXT + 1), "a\x00b", 7])
def test_external_id_must_be_a_short_plain_string(value: Any) -> None:
    error = exactly(InvalidInput, NewConversation, **CONV, external_id=value)
    assert error.message.startswith("external_id: ")


@pytest.mark.parametrize("field, value, error", [
    ("quantity", 1.5, InvalidMoney), ("quantity", -1, InvalidMoney), ("quantity", True,
                                                                      InvalidMoney),
    ("unit_amount", 49.99, InvalidMoney), ("unit_amount", INJECTION, InvalidMoney),
    ("currency", "usdollar", InvalidMoney), ("description", INJECTION, InvalidInput),
    ("description", "x" * (MAX_TEXT + 1), InvalidInput), ("description", "\x00", InvalidInput),
])
def test_new_line_item_errors(field: str, value: Any, error: type[BillingError]) -> None:
    exactly(error, NewLineItem, **{**ITEM, field: value})


junk = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=600),
    st.decimals(allow_nan=False), st.binary(max_size=8),
    st.dictionaries(st.sampled_from(["$ne", "$gt", "$where"]), st.none(), min_size=1),
    st.lists(st.integers(), max_size=2),
    # Years clear of datetime's ends: tests/unit/test_periods.py covers those (a known bug).
    st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(2200, 1, 1),
                 timezones=st.sampled_from([None, UTC, timezone(timedelta(hours=-7))])),
)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from([(NewOrg, ORG), (NewConversation, CONV), (NewLineItem, ITEM)]),
       st.data())
def test_any_value_in_any_field_parses_or_raises_a_billing_error(
    model_and_valid: tuple[Any, dict[str, Any]], data: st.DataObject
) -> None:
    model, valid = model_and_valid
    field = data.draw(st.sampled_from([*valid, "extra"]))
    value = data.draw(junk)
    try:
        model.parse(**{**valid, field: value})
    except BillingError as exc:
        assert isinstance(exc, InvalidInput)
        assert exc.message
