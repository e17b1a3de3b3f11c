"""What the CLI prints: aligned tables and JSON on stdout, a progress bar on stderr.

The bar is drawn only on a terminal, so logs and pipes get clean output; JSON is one document
on one line, so a cron log holds one run per line.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, TextIO

from billing.cli import signals
from billing.collection_runs import OrgCollection
from billing.invoice_runs import OrgResult, Outcome
from billing.reconcile_findings import OrgScan


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], *,
          right: Sequence[int] = ()) -> str:
    """Columns padded to their widest cell; columns listed in `right` are right-aligned."""
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        padded = (c.rjust(w) if i in right else c.ljust(w)
                  for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
        return "  ".join(padded).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def emit_json(document: Mapping[str, Any], stream: TextIO) -> None:
    stream.write(json.dumps(document, separators=(",", ":")) + "\n")
    stream.flush()


class ProgressBar:
    """A progress callback drawing `[####....] 3/10 orgs, 1 failed` in place: of an invoice run
    (`billing.invoice_runs.Progress`, an `OrgResult` per org) or of a reconciliation (an `OrgScan`).

    Draws nothing unless `stream` is a terminal. Use it as a context manager, so the line is
    ended even when the run raises.
    """

    WIDTH = 30

    def __init__(self, stream: TextIO, label: str) -> None:
        self._stream = stream
        self._label = label
        self._enabled = stream.isatty()
        self._drawn = False
        self._failed = 0

    def __call__(self, done: int, total: int,
                 latest: OrgResult | OrgScan | OrgCollection) -> None:
        signals.check()  # between orgs: a SIGTERM whose first Stopped was lost stops here
        if not self._enabled:
            return
        self._failed += _failed(latest)
        filled = self.WIDTH * done // total if total else self.WIDTH
        bar = "#" * filled + "." * (self.WIDTH - filled)
        failed = f", {self._failed} failed" if self._failed else ""
        self._stream.write(f"\r{self._label} [{bar}] {done}/{total} orgs{failed}")
        self._stream.flush()
        self._drawn = True

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._drawn:
            self._stream.write("\n")
            self._stream.flush()


def _failed(latest: OrgResult | OrgScan | OrgCollection) -> bool:
    if isinstance(latest, OrgScan | OrgCollection):
        return latest.failed  # a repair failed (a dry run repairs nothing: never)
    return latest.outcome is Outcome.FAILED
