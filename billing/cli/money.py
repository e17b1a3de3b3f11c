"""Amounts for people: integer minor units shown in major units with the currency's exponent.

Display only: amounts are stored and summed as integers of minor units (billing.domain.money).
"""

from __future__ import annotations

from billing.domain.money import exponent


def format_money(amount: int, currency: str) -> str:
    """1234567 usd -> '12,345.67 USD'; 1500 jpy -> '1,500 JPY'; 1500 bhd -> '1.500 BHD'."""
    places = exponent(currency)
    major, minor = divmod(abs(amount), 10**places)
    text = f"{major:,}" + (f".{minor:0{places}d}" if places else "")
    return f"{'-' if amount < 0 else ''}{text} {currency.upper()}"
