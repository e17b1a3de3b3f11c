"""The billing process of case 4: one dry-run reconciliation, measured from inside.

    python -m bench.reconcile_child < request.json   # {"uri", "database", "shard", ...}

Its own process, so the peak RSS it prints is the reconciliation's alone (not the seeding's,
nor an in-process engine's). Prints one line of MongoDB extended JSON: seconds, peak RSS before
and after the run (and ru_maxrss), the report's counts, the conversations summed per check, the
commands sent, and one example of each distinct query shape (for explain, in the parent) with
the number of calls of that shape and their duration.
"""

from __future__ import annotations

import resource
import sys
import time
from collections import Counter
from typing import Any

from bson import json_util
from pymongo import MongoClient, monitoring

from billing import Billing

QUERIES = {"find", "aggregate", "count", "distinct"}
# Session, transaction and routing fields: not part of the query's shape.
NOT_QUERY = {"lsid", "txnNumber", "autocommit", "startTransaction", "readConcern", "writeConcern"}


def shape(value: Any) -> Any:
    """The structure of a filter or pipeline, values replaced by their type names."""
    if isinstance(value, dict):
        return tuple((k, shape(v)) for k, v in value.items())
    if isinstance(value, list):
        return tuple(dict.fromkeys(shape(v) for v in value))
    return type(value).__name__


class Queries(monitoring.CommandListener):
    """Counts commands by name; keeps the first command of each query shape and the time the
    server took (as the driver sees it) for every call of that shape."""

    def __init__(self) -> None:
        self.commands = Counter[str]()
        self.samples: dict[Any, dict[str, Any]] = {}
        self.millis: dict[Any, list[float]] = {}
        self._pending: dict[int, Any] = {}

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.commands[event.command_name] += 1
        if event.command_name not in QUERIES:
            return
        command = {k: v for k, v in event.command.items()
                   if k not in NOT_QUERY and not k.startswith("$")}
        key = (event.command_name, shape({k: v for k, v in command.items()
                                          if k not in ("batchSize",)}))
        self.samples.setdefault(key, command)
        self._pending[event.request_id] = key

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        if (key := self._pending.pop(event.request_id, None)) is not None:
            self.millis.setdefault(key, []).append(event.duration_micros / 1000)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._pending.pop(event.request_id, None)

    def clear(self) -> None:
        self.commands.clear()
        self.millis.clear()

    def timed_samples(self) -> list[dict[str, Any]]:
        """[{command, calls, median_ms, total_ms}] in the order the shapes were first sent."""
        out = []
        for key, command in self.samples.items():
            millis = sorted(self.millis.get(key, [0.0]))
            out.append({"command": command, "calls": len(self.millis.get(key, [])),
                        "median_ms": millis[len(millis) // 2], "total_ms": sum(millis)})
        return out


def peak_rss_mb() -> float:
    """This process's peak resident set: VmHWM where /proc has it (Linux). Not `ru_maxrss`: on
    Linux it is carried across exec, so a child starts with its parent's peak (see the notes)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**10  # kB
    except OSError:
        pass
    return ru_maxrss_mb()


def ru_maxrss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def main() -> int:
    request = json_util.loads(sys.stdin.read())
    queries = Queries()
    client: MongoClient[dict[str, Any]] = MongoClient(request["uri"], event_listeners=[queries])
    with client:
        billing = Billing(client, database=request["database"])
        client.admin.command("ping")
        before = peak_rss_mb()
        queries.clear()
        started = time.perf_counter()
        report = billing.reconciliation.run(apply=False, checks=request.get("checks"),
                                            shard=tuple(request.get("shard", (0, 1))))
        seconds = time.perf_counter() - started
        peak, maxrss = peak_rss_mb(), ru_maxrss_mb()
    summed = Counter[str]()
    for finding in report.findings:
        summed[finding.check.value] += finding.count
    print(json_util.dumps({
        "seconds": seconds, "rss_before_mb": before, "peak_rss_mb": peak,
        "ru_maxrss_mb": maxrss,
        "orgs_scanned": report.orgs_scanned, "counts": report.counts,
        "summed": dict(summed), "commands": dict(queries.commands),
        "samples": queries.timed_samples(),
    }, json_options=json_util.CANONICAL_JSON_OPTIONS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
