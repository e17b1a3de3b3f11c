"""Figures the reliability suite reports: counted by the tests, printed at the end of the run.

    figures.add("fault points survived", survived, of=total)
    figures.add("bad inputs tried", 1)          # sums over tests

`tests/conftest.py` prints them in pytest's terminal summary, so every run of `scripts/test`
ends with what was tried, not only with how many tests passed.
"""

from __future__ import annotations

from collections import defaultdict

_counts: dict[str, int] = defaultdict(int)
_totals: dict[str, int] = defaultdict(int)


def add(name: str, n: int = 1, *, of: int | None = None) -> None:
    """Add `n` to the figure `name`; with `of`, also to its total (printed as `n/of`)."""
    _counts[name] += n
    if of is not None:
        _totals[name] += of


def lines() -> list[str]:
    return [f"{name}: {count}/{_totals[name]}" if name in _totals else f"{name}: {count}"
            for name, count in sorted(_counts.items())]
