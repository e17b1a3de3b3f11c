"""The error tree drawn in billing/errors.py's docstring is the real class hierarchy."""

from __future__ import annotations

import re

import pytest

from billing import errors

# "    │   ├── InvalidPeriod (ValueError)   comment": prefix, optional branch, name, extra base.
_LINE = re.compile(r"^(?P<prefix>[ │]*)(?:[├└]── )?(?P<name>[A-Z]\w*)(?: \((?P<extra>\w+)\))?")


def drawn_tree() -> list[tuple[str, str | None, str | None]]:
    """(class, drawn parent, drawn extra base) for each line of the drawing, in order."""
    lines = (errors.__doc__ or "").splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("BillingError"))
    indent = len(lines[start]) - len(lines[start].lstrip())
    stack: list[str] = []
    out: list[tuple[str, str | None, str | None]] = []
    for line in lines[start:]:
        if not line.strip():
            break
        match = _LINE.match(line[indent:])
        assert match, f"unparseable tree line {line!r}"
        depth = len(match["prefix"]) // 4 + (1 if "──" in line else 0)
        del stack[depth:]
        out.append((match["name"], stack[-1] if stack else None, match["extra"]))
        stack.append(match["name"])
    return out


def defined_errors() -> set[str]:
    return {
        name for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, errors.BillingError)
    }


def test_the_drawing_names_every_error_class_once() -> None:
    names = [name for name, _, _ in drawn_tree()]
    assert len(names) == len(set(names))
    assert set(names) == defined_errors()


@pytest.mark.parametrize("name, parent, extra", drawn_tree())
def test_each_drawn_class_has_its_drawn_parent(name: str, parent: str | None,
                                               extra: str | None) -> None:
    cls = getattr(errors, name)
    if parent is None:
        assert cls is errors.BillingError
        assert cls.__bases__ == (Exception,)
        return
    assert cls.__bases__[0] is getattr(errors, parent)
    drawn_extra = {extra} if extra else set()
    assert {b.__name__ for b in cls.__bases__[1:]} == drawn_extra


def test_only_transient_database_errors_are_retryable() -> None:
    retryable = {name for name in defined_errors() if getattr(errors, name).retryable}
    assert retryable == {"TransientDatabaseError"}


def test_an_error_keeps_its_message() -> None:
    exc = errors.OrgNotFound("no org 1: create it first")
    assert exc.message == str(exc) == "no org 1: create it first"
    assert isinstance(exc, LookupError)
    assert isinstance(errors.InvalidMoney("x"), ValueError)
