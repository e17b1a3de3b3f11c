"""Crash injection: run one billing operation in a child process that dies by SIGKILL at a named
fault point, then check the invariants recovery must restore.

    proc = run_child(point, op, uri=..., database=..., stripe_url=..., args={...}, options={...})
    assert proc.returncode == -9          # it really reached `point`

The child is `python -m tests.support.crash SPEC` (SPEC a JSON object): it builds a `Billing` on
the parent's database and localstripe, with `BILLING_FAULTS="<point>=kill"` in its environment,
and runs one operation of OPERATIONS. Invariant checks take the parent's `Billing` and a
`stripe.StripeClient` on the same localstripe (tests/support/invariants.py).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import stripe
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from billing import Billing
from tests.support.billing_data import OCT

ROOT = Path(__file__).resolve().parents[2]
KILLED = -9  # subprocess returncode of a child ended by SIGKILL
CHILD_TIMEOUT_S = 120


def run_child(
    point: str, op: str, *, uri: str, database: str, stripe_url: str | None = None,
    args: dict[str, Any] | None = None, options: dict[str, Any] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `op` in a child process with the fault point `point` set to kill."""
    spec = {"uri": uri, "database": database, "stripe_url": stripe_url, "op": op,
            "args": args or {}, "options": options or {}}
    env = {**os.environ, "BILLING_FAULTS": f"{point}=kill"}
    return subprocess.run([sys.executable, "-m", "tests.support.crash", json.dumps(spec)],
                          env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=CHILD_TIMEOUT_S)


# ---- the child ----------------------------------------------------------------------------------

def _create(b: Billing, a: dict[str, Any]) -> Any:
    return b.invoices.create_for_period(a["org"], *OCT, finalize=a.get("finalize", True))


def _reconcile(b: Billing, a: dict[str, Any]) -> Any:
    return b.reconciliation.run(apply=True, stale_after=timedelta(0),
                                lease_seconds=a.get("lease_seconds", 300.0))


def _webhook(b: Billing, a: dict[str, Any]) -> Any:
    from billing.adapters.stripe_webhooks import sign

    payload = a["payload"].encode()
    return b.webhooks.handle(payload, sign(payload, secret=a["secret"]))


OPERATIONS: dict[str, Callable[[Billing, dict[str, Any]], Any]] = {
    "create_for_period": _create,
    "finalize": lambda b, a: b.invoices.finalize(a["org"], a["invoice"]),
    "void": lambda b, a: b.invoices.void(a["org"], a["invoice"]),
    "add_line_item": lambda b, a: b.line_items.add(
        a["org"], a["invoice"], description="Setup fee", quantity=1, unit_amount=5000),
    "attach": lambda b, a: b.payment_methods.attach(
        a["org"], a.get("source", "pm_card_visa"), request_id=a["request_id"]),
    "detach": lambda b, a: b.payment_methods.detach(a["org"], a["method"]),
    "pay": lambda b, a: b.invoices.pay(a["org"], a["invoice"]),
    "webhook": _webhook,
    "credit_note": lambda b, a: b.credit_notes.create(
        a["org"], a["invoice"], amount=a["amount"], reason="order_change",
        request_id=a["request_id"]),
    "reconcile": _reconcile,
    "collect": lambda b, a: b.collections.run(apply=True,
                                              lease_seconds=a.get("lease_seconds", 300.0)),
}


def gateway(stripe_url: str) -> Any:
    from billing.gateways import StripeGateway
    from tests.support.stripe import TEST_KEY

    client = stripe.StripeClient(TEST_KEY, base_addresses={"api": stripe_url})
    return StripeGateway(client, off_session=False)


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    options = dict(spec["options"])
    if spec["stripe_url"]:
        options["gateway"] = gateway(spec["stripe_url"])
    client: MongoClient[dict[str, Any]] = MongoClient(spec["uri"], timeoutMS=20_000)
    with client:
        b = Billing(client, database=spec["database"], transaction_retry_seconds=60, **options)
        OPERATIONS[spec["op"]](b, spec["args"])
    return 0  # reaching here means the fault point was never hit


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


# ---- a SecantusDB server in its own process, killed and restarted by PID ----------------------

_SERVER = """
import signal, sys
from secantus import SecantusDBServer
server = SecantusDBServer(port=int(sys.argv[1]), storage_path=sys.argv[2], sync_on_commit=True,
                          transaction_lifetime_seconds=float(sys.argv[3]))
server.start()
print(server.uri, flush=True)
signal.sigwait({signal.SIGTERM, signal.SIGINT})
server.stop()
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """A durable (sync_on_commit) SecantusDB in a child process on a fixed port and storage, so
    it can be killed with SIGKILL and restarted on the same data and address."""

    def __init__(self, storage: Path, *, transaction_lifetime_seconds: float = 5) -> None:
        self.storage, self.port = storage, free_port()
        self.lifetime = transaction_lifetime_seconds
        self.uri = f"mongodb://127.0.0.1:{self.port}/?replicaSet=secantus"
        self.proc: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 30) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _SERVER, str(self.port), str(self.storage), str(self.lifetime)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None
        self.proc.stdout.readline()  # the URI, once listening
        self.proc.stdout.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                probe: MongoClient[dict[str, Any]] = MongoClient(self.uri, timeoutMS=2000)
                with probe:
                    probe.admin.command("ping")
                return
            except PyMongoError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL, as a crash or power cut of the database host would (the data is fsynced on
        every commit)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
