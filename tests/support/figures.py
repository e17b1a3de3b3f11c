"""Figures the reliability suite reports: counted by the tests, printed at the end of the run.

    figures.add("fault points survived", survived, of=total)
    figures.add("bad inputs tried", 1)          # sums over tests
    figures.seen("stripe intent states", "processing")  # distinct values, printed as a count

`tests/conftest.py` prints them in pytest's terminal summary, so every run of `scripts/test`
ends with what was tried, not only with how many tests passed.
"""

from __future__ import annotations

from collections import defaultdict

_counts: dict[str, int] = defaultdict(int)
_totals: dict[str, int] = defaultdict(int)
_seen: dict[str, set[str]] = defaultdict(set)


def add(name: str, n: int = 1, *, of: int | None = None) -> None:
    """Add `n` to the figure `name`; with `of`, also to its total (printed as `n/of`)."""
    _counts[name] += n
    if of is not None:
        _totals[name] += of


def seen(name: str, *values: str) -> None:
    """Note values reached (e.g. Stripe intent states): the figure is how many distinct ones."""
    _seen[name].update(values)


def lines() -> list[str]:
    distinct = [f"{name}: {len(values)} ({', '.join(sorted(values))})"
                for name, values in sorted(_seen.items())]
    return distinct + [f"{name}: {count}/{_totals[name]}" if name in _totals else f"{name}: {count}"
            for name, count in sorted(_counts.items())]
