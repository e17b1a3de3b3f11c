"""Fault points do nothing until switched on, and switch back off after the block."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import billing
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


def test_the_code_hits_exactly_the_listed_points() -> None:
    """The crash suite gives every point of POINTS a scenario: a point hit but not listed (or a
    name built at run time) would never be crashed at; one listed but never hit, never reached."""
    hit: set[str] = set()
    for path in Path(billing.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr == "hit" and isinstance(node.func.value, ast.Name) \
                    and node.func.value.id == "faults":
                (name,) = node.args
                assert isinstance(name, ast.Constant) and isinstance(name.value, str), \
                    f"{path}:{node.lineno}: name the fault point with a literal"
                hit.add(name.value)
    assert hit == set(faults.POINTS)
