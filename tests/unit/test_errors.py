"""The error tree drawn in billing/errors.py's docstring is the real class hierarchy."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from billing import errors

# "│   ├── InvalidPeriod (ValueError)   comment": the drawing before a class, the class, an extra
# base in parentheses, then the comment. A line without a branch continues the comment above.
_BRANCH = re.compile(
    r"^(?P<prefix>[ │]*)[├└]── (?P<name>[A-Z]\w*)(?: \((?P<extra>\w+)\))?(?:\s+(?P<note>.*))?$")
_ROOT = re.compile(r"^(?P<name>BillingError)(?:\s+(?P<note>.*))?$")


@dataclass(frozen=True)
class Drawn:
    name: str
    parent: str | None
    extra: str | None
    note: str


def drawn_tree() -> list[Drawn]:
    """Each class drawn in the docstring, with its drawn parent, extra base and comment."""
    lines = (errors.__doc__ or "").splitlines()
    start = next(i for i, line in enumerate(lines) if _ROOT.match(line.strip()))
    indent = len(lines[start]) - len(lines[start].lstrip())
    root = _ROOT.match(lines[start].strip())
    assert root
    out = [Drawn("BillingError", None, None, root["note"] or "")]
    stack = ["BillingError"]
    for line in lines[start + 1:]:
        if not line.strip():
            break
        match = _BRANCH.match(line[indent:])
        if match is None:
            assert set(line[indent:].split()[0]) <= {"│"}, f"unparseable tree line {line!r}"
            continue  # a comment continued on the next line
        depth = len(match["prefix"]) // 4 + 1
        assert depth <= len(stack), f"line skips a level: {line!r}"
        del stack[depth:]
        out.append(Drawn(match["name"], stack[-1], match["extra"], match["note"] or ""))
        stack.append(match["name"])
    return out


def defined_errors() -> set[str]:
    return {
        name for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, errors.BillingError)
    }


def test_the_drawing_names_every_error_class_once() -> None:
    names = [d.name for d in drawn_tree()]
    assert len(names) == len(set(names))
    assert set(names) == defined_errors()


@pytest.mark.parametrize("drawn", drawn_tree(), ids=lambda d: d.name)
def test_each_drawn_class_has_its_drawn_parent(drawn: Drawn) -> None:
    cls = getattr(errors, drawn.name)
    if drawn.parent is None:
        assert cls.__bases__ == (Exception,)
        return
    assert cls.__bases__[0] is getattr(errors, drawn.parent)
    drawn_extra = {drawn.extra} if drawn.extra else set()
    assert {b.__name__ for b in cls.__bases__[1:]} == drawn_extra


@pytest.mark.parametrize("drawn", drawn_tree(), ids=lambda d: d.name)
def test_retryable_is_as_drawn(drawn: Drawn) -> None:
    # The drawing marks retryable errors by starting their comment with "retryable".
    assert getattr(errors, drawn.name).retryable is drawn.note.startswith("retryable")


def test_an_error_keeps_its_message() -> None:
    exc = errors.OrgNotFound("no org 1: create it first")
    assert exc.message == str(exc) == "no org 1: create it first"
    assert isinstance(exc, LookupError)
    assert isinstance(errors.InvalidMoney("x"), ValueError)


def test_billing_exports_the_whole_error_tree() -> None:
    import billing

    exported = set(billing.__all__)
    missing = {name for name in defined_errors() if name not in exported}
    assert missing == set(), f"add to billing/__init__.py and its __all__: {sorted(missing)}"
    for name in defined_errors():
        assert getattr(billing, name) is getattr(errors, name)
