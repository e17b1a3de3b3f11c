"""`python -m bench [--size tiny|full] [--cases 1,...] [--delay-ms 1.0] [--in-process] [--out FILE]`

Starts its own SecantusDB in a process of its own (or uses MONGODB_URI), runs the cases, prints
their tables and writes the markdown page: docs/benchmarks.md after a full run, FILE with --out
(a smaller run never overwrites the committed page unless asked to). Exit status 0 when every
case ran and every check held (equal totals, one invoice per race...), 1 otherwise.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

from bench import engine, report
from bench.cases import SIZES, Bench, CheckFailed, registry
from bench.proxy import DelayProxy
from billing.domain.periods import last_closed_month

PAGE = Path("docs/benchmarks.md")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[2])
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--cases", default=",".join(map(str, registry())), type=_cases,
                        help="comma-separated case numbers (default: all)")
    parser.add_argument("--delay-ms", type=float, default=1.0,
                        help="simulated network round trip for case 1; 0 skips it (default 1.0)")
    parser.add_argument("--in-process", action="store_true",
                        help="run SecantusDB in the benchmark's own process instead of its own")
    parser.add_argument("--out", type=Path, default=None,
                        help="where to write the page (default: docs/benchmarks.md for --size "
                        "full, none otherwise)")
    return parser.parse_args(argv)


def _cases(text: str) -> list[int]:
    try:
        cases = sorted({int(part) for part in text.split(",")})
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of case numbers: {text!r}") from None
    if not cases or not set(cases) <= set(registry()):
        raise argparse.ArgumentTypeError(f"cases are {sorted(registry())}, got {text!r}")
    return cases


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    began = time.monotonic()

    def log(line: str) -> None:
        print(f"[{time.monotonic() - began:6.1f} s] {line}", file=sys.stderr, flush=True)

    tables: list[report.Table] = []
    with engine.start(in_process=args.in_process) as eng, ExitStack() as stack:
        extra = {"client bulkWrite": "yes (MongoDB 8.0+ wire)" if eng.client_bulk_write
                 else "no: one write per collection"}
        added_rtt = _start_proxy(eng, args.delay_ms, extra, stack)
        bench = Bench(eng, SIZES[args.size], args.delay_ms, last_closed_month(), log, added_rtt)
        try:
            for number in args.cases:
                tables.append(registry()[number](bench))
                print(report.text(tables[-1]), flush=True)
        except CheckFailed as exc:
            print(f"bench: a check failed, no page written: {exc}", file=sys.stderr)
            return 1
        facts = report.machine_facts(eng.name, extra)
    seconds = time.monotonic() - began
    if args.out is None and args.size != "full":
        print(f"done after {seconds:.0f} s; no page written for --size {args.size} "
              "(pass --out FILE for one)")
        return 0
    args.out = args.out or PAGE
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report.page(facts, tables, command=" ".join(["python -m bench", *argv]),
                                    size=args.size, seconds=seconds))
    print(f"wrote {args.out} after {seconds:.0f} s ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)")
    return 0


def _start_proxy(eng: engine.Engine, delay_ms: float, facts: dict[str, str],
                 stack: ExitStack) -> float | None:
    """Starts the delay proxy; returns the round trip it adds, measured (None: no proxy)."""
    if delay_ms <= 0:
        return None
    if eng.delayed_address is None:
        facts["simulated round trip"] = "skipped: MONGODB_URI has several hosts, SRV or TLS"
        return None
    proxy = stack.enter_context(DelayProxy(eng.delayed_address, rtt_ms=delay_ms))
    eng.proxy_port = proxy.port
    direct, proxied = _calibrate(eng)
    if (excess := proxied - direct - delay_ms) > 0:
        # The proxy's own thread hops add to the delay: take them off it, once.
        proxy.half_rtt = max(0.0, proxy.half_rtt - excess / 2000)
        direct, proxied = _calibrate(eng)
    facts["simulated round trip"] = (
        f"{delay_ms:g} ms asked; median ping {direct:.2f} ms direct, {proxied:.2f} ms through "
        f"the proxy (+{proxied - direct:.2f} ms; it sleeps {proxy.half_rtt * 1000:.2f} ms each "
        "way, the rest is its own overhead)")
    return proxied - direct


def _calibrate(eng: engine.Engine) -> tuple[float, float]:
    """Median `ping` in ms, direct and through the proxy: the difference is what it adds."""
    medians = []
    for delayed in (False, True):
        with eng.client(delayed=delayed) as client:
            client.admin.command("ping")
            samples = []
            for _ in range(200):
                started = time.perf_counter()
                client.admin.command("ping")
                samples.append(time.perf_counter() - started)
        medians.append(statistics.median(samples) * 1000)
    return medians[0], medians[1]


if __name__ == "__main__":
    sys.exit(main())
