"""Fault points do nothing until switched on, and switch back off after the block."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from billing import faults
from billing.errors import BillingError

POINT = "invoice.chunk.after_write"


@pytest.fixture(autouse=True)
def no_faults_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # BILLING_FAULTS is read at import: start each test from none, whatever the shell set.
    monkeypatch.setattr(faults, "_active", {})
    yield


def test_an_inactive_point_does_nothing() -> None:
    for point in faults.POINTS:
        faults.hit(point)
    faults.hit("not.a.point")


def test_an_active_point_raises_only_inside_the_block() -> None:
    with faults.active({POINT: "raise"}):
        with pytest.raises(faults.InjectedFault, match=POINT):
            faults.hit(POINT)
        faults.hit("invoice.between_chunks")  # other points stay off
    faults.hit(POINT)


def test_the_previous_state_is_restored_after_an_error() -> None:
    with pytest.raises(faults.InjectedFault):
        with faults.active({POINT: "raise"}):
            faults.hit(POINT)
    faults.hit(POINT)


def test_blocks_nest() -> None:
    with faults.active({POINT: "raise"}):
        with faults.active({"line_items.after_write": "raise"}):
            for point in (POINT, "line_items.after_write"):
                with pytest.raises(faults.InjectedFault):
                    faults.hit(point)
        faults.hit("line_items.after_write")
        with pytest.raises(faults.InjectedFault):
            faults.hit(POINT)
    faults.hit(POINT)


def test_an_injected_fault_is_not_a_billing_error() -> None:
    assert not issubclass(faults.InjectedFault, BillingError)


def test_the_environment_syntax() -> None:
    assert faults._parse("") == {}
    assert faults._parse(" a.b = raise , c.d=kill,e.f ,") == {
        "a.b": "raise", "c.d": "kill", "e.f": "raise"}
