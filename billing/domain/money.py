"""Money is an integer count of minor units plus an ISO 4217 currency; never a float."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from billing.errors import InvalidMoney, shown

# MongoDB stores integers as int64; a total beyond this cannot be stored exactly.
MAX_AMOUNT = 2**63 - 1

# Active ISO 4217 codes (lower case, as Stripe writes them).
CURRENCIES = frozenset(
    """
    aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bhd bif bmd bnd bob brl bsd btn bwp byn
    bzd cad cdf chf clp cny cop crc cuc cup cve czk djf dkk dop dzd egp ern etb eur fjd fkp gbp gel
    ghs gip gmd gnf gtq gyd hkd hnl htg huf idr ils inr iqd irr isk jmd jod jpy kes kgs khr kmf kpw
    krw kwd kyd kzt lak lbp lkr lrd lsl lyd mad mdl mga mkd mmk mnt mop mru mur mvr mwk mxn myr mzn
    nad ngn nio nok npr nzd omr pab pen pgk php pkr pln pyg qar ron rsd rub rwf sar sbd scr sdg sek
    sgd shp sle sll sos srd ssp stn svc syp szl thb tjs tmt tnd top try ttd twd tzs uah ugx usd uyu
    uzs ves vnd vuv wst xaf xcd xof xpf yer zar zmw zwl
    """.split()
)


# Currencies whose minor unit is not a hundredth; every other one has two decimals.
_EXPONENTS = {
    **dict.fromkeys("bif clp djf gnf isk jpy kmf krw pyg rwf ugx vnd vuv xaf xof xpf".split(), 0),
    **dict.fromkeys("bhd iqd jod kwd lyd omr tnd".split(), 3),
}


def exponent(code: str) -> int:
    """Decimal places of the currency's minor unit: jpy 0, usd 2, bhd 3."""
    return _EXPONENTS.get(code.lower(), 2)


def currency(value: Any) -> str:
    """Validate an ISO 4217 code; returns it lower case."""
    if not isinstance(value, str) or value.lower() not in CURRENCIES:
        raise InvalidMoney(f"unknown currency {shown(value)}: use an ISO 4217 code such as 'usd'")
    return value.lower()


def amount(value: Any, *, name: str = "amount") -> int:
    """Validate a non-negative amount of minor units that MongoDB can store exactly."""
    if isinstance(value, bool) or not isinstance(value, int):
        hint = " (floats are never money: pass integer minor units, e.g. 1050 for 10.50)"
        raise InvalidMoney(f"{name} must be an int of minor units, got {value!r}{hint}")
    if value < 0:
        raise InvalidMoney(f"{name} must not be negative, got {value}")
    if value > MAX_AMOUNT:
        raise InvalidMoney(f"{name} {value} exceeds the largest storable amount {MAX_AMOUNT}")
    return value


def quantity(value: Any, *, name: str = "quantity") -> int:
    """A non-negative whole count (conversations, minutes, units)."""
    return amount(value, name=name)


def multiply(unit_amount: int, count: int) -> int:
    """unit_amount x count, refusing results MongoDB cannot store."""
    product = unit_amount * count
    if product > MAX_AMOUNT:
        raise InvalidMoney(f"{unit_amount} x {count} overflows the largest storable amount")
    return product


def total(amounts: Iterable[int]) -> int:
    """Sum of amounts; the one function that derives totals."""
    result = sum(amounts)
    if result > MAX_AMOUNT:
        raise InvalidMoney("total overflows the largest storable amount")
    return result
