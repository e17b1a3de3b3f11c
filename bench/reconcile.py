"""Case 4: a dry-run reconciliation over N conversations, in a separate billing process.

At each size a fresh database is seeded in bulk (bench/reconcile_seed.py: billed orgs plus
known defects), then `Billing.reconciliation.run(apply=False)` runs in a child process
(bench/reconcile_child.py) that reports its wall time, its peak RSS and what it found; the
findings must be exactly the seeded ones. A probe over a shard of about 20 orgs first projects
the time of the whole run: past the budget, the run is cut to one shard (`shard=(0, k)`, the
library's own way to split a run between workers) and the notes say so. The query shapes the
run sent are explained on the largest database (bench/query_plans.py).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bson import json_util

from bench import query_plans, reconcile_seed
from bench.cases import Bench, CheckFailed
from bench.reconcile_child import peak_rss_mb
from bench.report import Table, num
from billing import Billing
from billing.reconcile_findings import Check

ROOT = Path(__file__).resolve().parents[1]
ALL = [c.value for c in Check]
HEADERS = ["conversations", "orgs", "checks", "orgs scanned", "conversations scanned",
           "seconds", "conversations/s", "ms/org", "commands/org", "RSS before run MB",
           "peak RSS MB", "findings", "findings as seeded"]
PROBE_ORGS = 20  # about this many orgs are scanned first, to project the whole run
PLAN_HEADERS = ["command", "collection", "query", "winning plan stages",
                "docs examined / returned", "index-eligible part alone", "flag", "calls in the run",
                "median ms", "total s"]


def run(bench: Bench) -> Table:
    table = Table(4, "Reconciliation dry run, in a separate billing process", HEADERS)
    points = bench.sizes.reconcile_points
    for n, orgs in points:
        with bench.database("reconcile") as db_name, bench.engine.client() as client:
            billing = Billing(client, database=db_name)
            billing.setup()
            bench.log(f"case 4: seeding {n:,} conversations in {orgs:,} orgs")
            started = time.perf_counter()
            expected = reconcile_seed.seed_orgs(billing.database, n, orgs, bench.period,
                                                datetime.now(UTC), bench.log)
            stored = billing.database.conversations.estimated_document_count()
            table.notes.append(f"{stored:,} conversations in {orgs:,} orgs seeded with "
                               f"insert_many in {time.perf_counter() - started:.0f} s "
                               "(not counted)")
            result = _measure(bench, table, db_name, n, orgs, ALL, expected)
            if (n, orgs) == points[-1]:
                bench.log("case 4: explaining the query shapes")
                table.subtables.append(_plans(billing.database, result["samples"]))
    _notes(bench, table)
    return table


def _measure(bench: Bench, table: Table, db_name: str, n: int, orgs: int, checks: list[str],
             expected: reconcile_seed.Expected) -> dict[str, Any]:
    label = "all" if checks == ALL else ", ".join(checks)
    shard = (0, 1)
    if (probe_shard := orgs // PROBE_ORGS) > 1:
        # A shard, not org_id=X: billing's run(org_id=X) also scanned the orgs after X when written.
        probe = _child(bench, db_name, checks, shard=(0, probe_shard))
        per_org = probe["seconds"] / max(probe["orgs_scanned"], 1)
        if (projected := per_org * orgs) > bench.sizes.reconcile_budget_s:
            shard = (0, min(4096, math.ceil(projected / bench.sizes.reconcile_budget_s)))
            table.notes.append(
                f"{n:,} conversations, checks {label}: cut to shard {shard[0]}/{shard[1]} of "
                f"the orgs: a probe took {per_org:.2f} s per org, so all {orgs:,} were "
                f"projected to take {projected:,.0f} s (budget "
                f"{bench.sizes.reconcile_budget_s:,.0f} s)")
    bench.log(f"case 4: dry run over {n:,} conversations, checks {label}, shard {shard}")
    out = _child(bench, db_name, checks, shard=shard)
    out["shard"] = list(shard)
    want = expected.counts(shard)
    got = {check: out["counts"][check] for check in checks}
    ok = got == {check: want[check] for check in checks} and all(
        out["summed"].get(c, 0) == want[f"{c} conversations"] for c in ("unbilled", "malformed")
        if c in checks)
    scanned = expected.conversations_in(shard)
    commands = sum(out["commands"].values())
    table.rows.append([
        num(n), num(orgs), label, num(out["orgs_scanned"]), num(scanned),
        num(out["seconds"], 1), num(scanned / out["seconds"], 0),
        num(1000 * out["seconds"] / max(out["orgs_scanned"], 1), 0),
        num(commands / max(out["orgs_scanned"], 1), 1), num(out["rss_before_mb"], 0),
        num(out["peak_rss_mb"], 0), num(sum(got.values())), "yes" if ok else "NO"])
    table.notes.append(f"{n:,} conversations, checks {label}: findings by check "
                       + ", ".join(f"{c} {v}" for c, v in got.items())
                       + f"; the child's ru_maxrss said {out['ru_maxrss_mb']:,.0f} MB")
    if not ok:
        raise CheckFailed(f"case 4 at {n:,} conversations: found {got} "
                          f"(conversations {out['summed']}), seeded {dict(want)}")
    return out


def _child(bench: Bench, db_name: str, checks: list[str], *,
           shard: tuple[int, int] = (0, 1)) -> dict[str, Any]:
    request = {"uri": bench.engine.uri, "database": db_name, "checks": checks,
               "shard": list(shard)}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, "-m", "bench.reconcile_child"], input=json_util.dumps(request),
        capture_output=True, text=True, cwd=ROOT, env=env, check=False,
        timeout=3 * bench.sizes.reconcile_budget_s + 300)
    if done.returncode != 0:
        raise CheckFailed(f"case 4: the reconciliation process failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json_util.loads(done.stdout.strip().splitlines()[-1])
    return result


def _plans(db: Any, samples: list[dict[str, Any]]) -> Table:
    table = Table(4, "Query plans of the largest dry run (explain, executionStats)",
                  PLAN_HEADERS)
    found = query_plans.explain_all(db, samples)
    for p in found:
        prefix = "" if p.prefix_stages is None else " ".join(p.prefix_stages)
        timing = [num(p.calls), num(p.median_ms, 1), num(p.total_ms / 1000, 1)] if p.calls \
            else ["", "", ""]
        table.rows.append([p.command, p.collection, p.query, " ".join(p.stages), p.examined,
                           prefix, "COLLSCAN" if p.flagged else "", *timing])
    flagged = [p for p in found if p.flagged]
    served = [p for p in flagged if p.prefix_stages and "IXSCAN" in p.prefix_stages]
    table.notes.append(f"{len(found)} query shapes; {len(flagged)} with a COLLSCAN on "
                       f"{', '.join(sorted(query_plans.WATCHED))}, of which {len(served)} have an "
                       "index-eligible part that the same engine serves with an IXSCAN")
    table.notes.append("calls, median ms and total s: every command of that shape in the "
                       "largest dry run, timed by the driver (server time plus the loopback "
                       "round trip); explain ran afterwards, on the same data")
    return table


def _notes(bench: Bench, table: Table) -> None:
    peaks = [float(r[HEADERS.index("peak RSS MB")].replace(",", "")) for r in table.rows
             if r[2] == "all"]
    measured = " and ".join(f"{p:.0f} MB" for p in peaks)
    flat = max(peaks) <= 1.3 * min(peaks)
    table.notes.append(f"goal: peak RSS under 300 MB and flat between the sizes: measured "
                       f"{measured} ({'met' if max(peaks) < 300 else 'NOT met'} for 300 MB, "
                       f"{'flat' if flat else 'NOT flat'} within 1.3x)")
    per_org = [(r[0], float(r[HEADERS.index("ms/org")].replace(",", ""))) for r in table.rows
               if r[2] == "all"]
    if len(per_org) > 1:
        (small, first), (large, last) = per_org[0], per_org[-1]
        table.notes.append(
            f"goal: ms per org at {large} conversations within 1.3x of ms per org at {small}: "
            f"{'met' if last <= 1.3 * first else 'NOT met'} ({last:.0f} against {first:.0f}, "
            f"{last / first:.2f}x)")
    table.notes.append(
        "peak RSS is the child's VmHWM (/proc/self/status), read before and after the run; "
        "getrusage's ru_maxrss is printed in the notes but not used: on Linux it is kept "
        "across exec, so a child starts with the peak of the process that spawned it (here "
        "the bench process, which seeds the data)")
    if "benchmark's process" in bench.engine.name:
        table.notes.append(f"the bench process (seeding, and the in-process SecantusDB serving "
                           f"the child) peaked at {peak_rss_mb():,.0f} MB so far")
