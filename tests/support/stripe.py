"""localstripe, the Stripe stand-in integration tests run against.

It runs as a subprocess listening on 127.0.0.1 only. The listening socket is bound here and
handed to the child, so there is no window in which another process could take the port.
localstripe pickles its whole store on every write to a hard-coded `/tmp/localstripe.pickle`
(not `$TMPDIR`): the launcher redirects that into the server's own temporary directory, so
concurrent test sessions neither share nor leak state. It also adds `DELETE /_config/webhooks`,
which forgets registered webhooks and cancels deliveries not yet made (localstripe sends each
event about 1 s after it happens, to the webhooks registered by then, so one test's events
would otherwise reach the next test's receiver). And it lists a customer's payment methods
without a `type` as Stripe does, every type (localstripe insists on `type=card`).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import stripe

TEST_KEY = "sk_test_billing"  # localstripe accepts any sk_ key longer than 5 characters
VISA, DECLINE, CHARGE_DECLINE = "4242424242424242", "4000000000000002", "4000000000000341"
THREE_D_SECURE = "4000002500003155"

_LAUNCHER = """
import asyncio, os, pickle, socket, sys
from aiohttp import web
from localstripe import resources, webhooks

def dump_to_disk(store):
    with open(os.path.join(os.environ["TMPDIR"], "localstripe.pickle"), "wb") as f:
        pickle.dump(store, f, protocol=pickle.HIGHEST_PROTOCOL)

pending = set()

def schedule_webhook(event):
    task = asyncio.ensure_future(webhooks._send_webhook(event))
    pending.add(task)
    task.add_done_callback(pending.discard)

async def reset_webhooks(request):
    webhooks._webhooks.clear()
    for task in list(pending):
        task.cancel()
    return web.Response()

def list_payment_methods(cls, url, customer=None, type=None, limit=None, starting_after=None):
    if type is not None:
        return by_type(url, customer=customer, type=type, limit=limit,
                       starting_after=starting_after)
    if not (isinstance(customer, str) and customer.startswith("cus_")):
        raise resources.UserError(400, "Bad request")
    resources.Customer._api_retrieve(customer)  # 404 when it does not exist
    li = resources.StripeObject._api_list_all.__func__(cls, url, limit=limit,
                                                        starting_after=starting_after)
    li._list = [pm for pm in li._list if pm.customer == customer]
    return li

by_type = resources.PaymentMethod._api_list_all
resources.PaymentMethod._api_list_all = classmethod(list_payment_methods)
resources.Store.dump_to_disk = dump_to_disk
resources.schedule_webhook = schedule_webhook
from localstripe.server import app
app.router.add_delete("/_config/webhooks", reset_webhooks)
web.run_app(app, sock=socket.socket(fileno=int(sys.argv[1])), print=None, access_log=None)
"""


@contextlib.contextmanager
def localstripe_server(*, startup_timeout: float = 30) -> Iterator[str]:
    """Yields the base URL of a fresh localstripe; stops it (by PID) and removes its files."""
    with tempfile.TemporaryDirectory(prefix="localstripe-") as state:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        log_path = Path(state) / "server.log"
        with listener, log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-c", _LAUNCHER, str(listener.fileno())],
                pass_fds=[listener.fileno()], stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "TMPDIR": state}, cwd=state,
            )
        try:
            _wait_until_serving(url, proc, log_path, startup_timeout)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def flush(url: str) -> None:
    """Forget webhooks and pending deliveries, then empty localstripe's store."""
    for path in ("/_config/webhooks", "/_config/data"):
        request = urllib.request.Request(url + path, method="DELETE")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()


def card(client: stripe.StripeClient, number: str) -> str:
    """A new unattached card PaymentMethod (e.g. DECLINE, THREE_D_SECURE); its id."""
    method = client.v1.payment_methods.create(params={
        "type": "card",
        "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"}})
    return method.id


async def card_async(client: stripe.StripeClient, number: str) -> str:
    method = await client.v1.payment_methods.create_async(params={
        "type": "card",
        "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"}})
    return method.id


def _wait_until_serving(
    url: str, proc: subprocess.Popen[bytes], log_path: Path, timeout: float
) -> None:
    request = urllib.request.Request(
        url + "/v1/customers?limit=1", headers={"Authorization": f"Bearer {TEST_KEY}"})
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"localstripe exited with {proc.returncode}: "
                               f"{log_path.read_text(errors='replace')[-2000:]}")
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                response.read()
                return
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                raise TimeoutError(f"localstripe did not answer within {timeout} s") from None
            time.sleep(0.05)
