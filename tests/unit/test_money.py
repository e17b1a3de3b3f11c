"""Money is an int of minor units that MongoDB can store, in a known ISO currency."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.domain import money
from billing.errors import InvalidMoney

MAX = 2**63 - 1
amounts = st.integers(min_value=0, max_value=MAX)


@pytest.mark.parametrize("value", [
    1.0, 10.5, math.nan, math.inf, -math.inf, True, False, -1, -(2**63), MAX + 1, 2**64,
    "100", "", None, Decimal("10.50"), Decimal(100), [100], {"$gt": 0}, 1 + 0j,
])
def test_amount_refuses_anything_but_a_storable_non_negative_int(value: Any) -> None:
    with pytest.raises(InvalidMoney):
        money.amount(value)


@pytest.mark.parametrize("value", [0, 1, 1050, 2**31, MAX])
def test_amount_accepts_ints_in_range_unchanged(value: int) -> None:
    result = money.amount(value)
    assert result == value
    assert type(result) is int


def test_a_float_amount_is_told_to_use_minor_units() -> None:
    with pytest.raises(InvalidMoney, match="minor units") as info:
        money.amount(10.5, name="unit_amount")
    assert "unit_amount" in info.value.message


def test_quantity_follows_the_same_rules() -> None:
    assert money.quantity(3) == 3
    for bad in (-1, 1.5, True, MAX + 1):
        with pytest.raises(InvalidMoney):
            money.quantity(bad)


@pytest.mark.parametrize("value, expected", [("usd", "usd"), ("USD", "usd"), ("Eur", "eur"),
                                             ("jpy", "jpy")])
def test_currency_is_normalised_to_lower_case(value: str, expected: str) -> None:
    assert money.currency(value) == expected


@pytest.mark.parametrize("value", ["xxx", "us", "usdd", "", " usd", "usd ", None, 840,
                                   {"$ne": None}, b"usd", ["usd"]])
def test_currency_refuses_unknown_codes(value: Any) -> None:
    with pytest.raises(InvalidMoney):
        money.currency(value)


def test_multiply_and_total_refuse_overflow() -> None:
    assert money.multiply(MAX, 1) == MAX
    assert money.multiply(2**31, 2**31) == 2**62
    with pytest.raises(InvalidMoney):
        money.multiply(2**32, 2**31)
    with pytest.raises(InvalidMoney):
        money.multiply(MAX, 2)
    assert money.total([MAX - 1, 1]) == MAX
    with pytest.raises(InvalidMoney):
        money.total([MAX, 1])


def test_total_of_nothing_is_zero() -> None:
    assert money.total([]) == 0
    assert money.total(iter(())) == 0


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=2**40), max_size=50))
def test_total_is_the_int_sum(values: list[int]) -> None:
    result = money.total(iter(values))
    assert result == sum(values)
    assert type(result) is int


@settings(max_examples=100, deadline=None)
@given(st.lists(amounts, max_size=5))
def test_total_either_is_exact_or_refuses(values: list[int]) -> None:
    if sum(values) > MAX:
        with pytest.raises(InvalidMoney):
            money.total(values)
    else:
        assert money.total(values) == sum(values)


@settings(max_examples=100, deadline=None)
@given(amounts, st.integers(min_value=0, max_value=2**40))
def test_multiply_is_exact_or_refuses(unit: int, count: int) -> None:
    if unit * count > MAX:
        with pytest.raises(InvalidMoney):
            money.multiply(unit, count)
    else:
        result = money.multiply(unit, count)
        assert result == unit * count
        assert type(result) is int


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=2**50), st.integers(min_value=0, max_value=40))
def test_multiply_is_repeated_addition(unit: int, count: int) -> None:
    # 2**50 + 1 is not representable as a float: a float product would round.
    assert money.multiply(unit, count) == money.total([unit] * count)
