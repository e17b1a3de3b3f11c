"""The benchmark at its tiny size, as a subprocess: it must keep running and keep its promises.

The full run is not part of CI (`python -m bench`, docs/benchmarks.md); this one checks that the
command works end to end and that the figures it reports hold: our command count per invoice is
flat and at most 5, and the naive baseline's is N + 5; the dry-run reconciliation finds exactly
the defects seeded, stays under 300 MB, and every query it sends is planned on an index.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CASE_1_HEADERS = ["conversations", "ours: commands/invoice", "naive: commands/invoice"]
TENANT_COLLECTIONS = {"conversations", "line_items", "payment_methods"}


def table_after(markdown: str, heading: str) -> list[dict[str, str]]:
    """The rows of the first markdown table under `heading`, as dicts keyed by header."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    table: list[list[str]] = []
    for line in lines[start + 1:]:
        if line.startswith("|"):
            table.append([cell.strip() for cell in line.strip("|").split("|")])
        elif table or line.startswith("## "):
            break
    assert len(table) >= 3, f"no table under {heading!r}"
    headers, body = table[0], table[2:]
    return [dict(zip(headers, row, strict=True)) for row in body]


def number(text: str) -> int:
    return int(text.replace(",", ""))


def test_tiny_benchmark_runs_and_its_figures_hold(tmp_path: Path) -> None:
    out = tmp_path / "b.md"
    # Its own SecantusDB, whatever the suite runs against: the figures below are for it.
    env = {k: v for k, v in os.environ.items() if k not in {"MONGODB_URI", "BILLING_FAULTS"}}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--size", "tiny", "--out", str(out)],
        capture_output=True, text=True, timeout=180, cwd=ROOT, env=env, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]

    page = out.read_text()
    for heading in ["## Case 1", "## Case 2", "## Case 3", "## Case 4", "## Case 5",
                    "## Case 6"]:
        assert heading in page
    rows = table_after(page, "## Case 1")
    assert all(header in rows[0] for header in CASE_1_HEADERS), rows[0].keys()
    ours = {number(r["conversations"]): number(r["ours: commands/invoice"]) for r in rows}
    naive = {number(r["conversations"]): number(r["naive: commands/invoice"]) for r in rows}
    assert len(ours) >= 2, "the tiny run measures at least two sizes"
    assert all(count <= 5 for count in ours.values()), ours
    assert len(set(ours.values())) == 1, f"our command count grows with conversations: {ours}"
    assert all(count == n + 5 for n, count in naive.items()), naive

    contention = table_after(page, "## Case 3")
    assert all(r["invoices in db"] == "1" and r["distinct ids returned"] == "1"
               for r in contention), contention
    bounded = table_after(page, "## Case 5")
    assert all(r["total as expected"] == "yes" for r in bounded), bounded
    ingest = table_after(page, "## Case 6")  # one transaction per batch, not per conversation
    assert [r["call"].split(",")[0].split(":")[0] for r in ingest] == [
        "record", "record_many", "floor", "record_many again"], ingest
    assert [number(r["transactions"]) for r in ingest] == [
        number(ingest[0]["conversations"]), *(number(r["calls"]) for r in ingest[1:])], ingest
    # A batch is its org read plus one lookup per 100 external ids and one insert; a repeated
    # batch finds every one and inserts nothing; the floor is an insert and a commit.
    batches = number(ingest[1]["calls"])
    assert number(ingest[2]["commands"]) == 2 * batches, ingest
    assert number(ingest[3]["commands"]) < number(ingest[1]["commands"]), ingest

    reconcile = table_after(page, "## Case 4")
    assert len(reconcile) >= 2, "case 4 measures at least two sizes"
    assert all(r["findings as seeded"] == "yes" and number(r["findings"]) > 0
               for r in reconcile), reconcile
    assert all(float(r["peak RSS MB"].replace(",", "")) < 300 for r in reconcile), reconcile
    # The engine answers explain (SecantusDB gives mongod's stage names): every query shape the
    # run sent to a tenant collection must be planned on an index, never a collection scan.
    plans = table_after(page, "### Query plans")
    tenant = [p for p in plans if p["collection"] in TENANT_COLLECTIONS]
    assert {p["collection"] for p in tenant} == TENANT_COLLECTIONS, plans
    assert all("IXSCAN" in p["winning plan stages"].split() and
               "COLLSCAN" not in p["winning plan stages"].split() for p in tenant), tenant
    assert not any(p["flag"] for p in plans), plans
