"""Stripe webhooks: verified before anything is written, applied once, never backwards."""

from __future__ import annotations

import http.server
import json
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from bson import ObjectId

from billing import Billing, InvoiceStatus, faults
from billing.adapters.stripe_webhooks import sign
from billing.domain.models import PaymentMethodStatus, PaymentStatus
from billing.faults import InjectedFault
from billing.plans.webhooks import WebhookOutcome
from tests.support.billing_data import OCT, dump, seed_conversations
from tests.support.racing import in_threads

pytestmark = pytest.mark.integration
SECRET = "whsec_test_secret"


@pytest.fixture
def hooks(client: Any, db_name: str, stripe_gateway: Any) -> Billing:
    b = Billing(client, database=db_name, gateway=stripe_gateway, webhook_secret=SECRET,
                payment_lease_seconds=30)
    b.setup()
    return b


def event(kind: str, obj: dict[str, Any], *, previous: dict[str, Any] | None = None,
          event_id: str | None = None) -> bytes:
    body: dict[str, Any] = {"id": event_id or f"evt_{ObjectId()}", "object": "event",
                            "type": kind, "created": int(time.time()), "livemode": False,
                            "data": {"object": obj}}
    if previous is not None:
        body["data"]["previous_attributes"] = previous
    return json.dumps(body).encode()


def deliver(b: Billing, payload: bytes, secret: str = SECRET, **kw: Any) -> Any:
    return b.webhooks.handle(payload, sign(payload, secret=secret, **kw))


def paid_through_webhook_setup(b: Billing) -> tuple[Any, Any, Any]:
    """An invoice whose pay() died after Stripe confirmed: only the webhook can finish it."""
    org = b.orgs.create(name="Acme", currency="usd", per_conversation=50, per_started_minute=10)
    seed_conversations(b.database, org.id, 4)
    inv = b.invoices.create_for_period(org.id, *OCT)
    b.payment_methods.attach(org.id, "pm_card_visa", request_id="r-1")
    with faults.active({"payments.after_confirm": "raise"}), pytest.raises(InjectedFault):
        b.invoices.pay(org.id, inv.id)
    payment = b.database.payments.find_one({"invoice_id": ObjectId(inv.id)})
    assert payment is not None and payment["status"] == "confirming" and payment["intent_id"]
    return org, inv, payment


def intent_object(b: Billing, payment: dict[str, Any], status: str = "succeeded") -> dict[str, Any]:
    return {"id": payment["intent_id"], "object": "payment_intent", "status": status,
            "amount": payment["amount"], "currency": payment["currency"],
            "metadata": {"org_id": str(payment["org_id"]),
                         "invoice_id": str(payment["invoice_id"]),
                         "payment_id": str(payment["_id"])}}


def test_succeeded_webhook_pays_the_invoice_once_and_replays_are_duplicates(
    hooks: Billing,
) -> None:
    org, inv, payment = paid_through_webhook_setup(hooks)
    payload = event("payment_intent.succeeded", intent_object(hooks, payment))

    first = deliver(hooks, payload)
    after_first = dump(hooks.database)
    replay = deliver(hooks, payload)

    assert (first.outcome, first.http_status) == (WebhookOutcome.PROCESSED, 200)
    assert (replay.outcome, replay.http_status) == (WebhookOutcome.DUPLICATE, 200)
    assert dump(hooks.database) == after_first
    paid = hooks.invoices.get(org.id, inv.id)
    assert paid.status is InvoiceStatus.PAID and paid.payment_lease is None

    late_failure = event("payment_intent.payment_failed",
                         intent_object(hooks, payment, "requires_payment_method"))
    assert deliver(hooks, late_failure).outcome is WebhookOutcome.PROCESSED
    assert hooks.invoices.get(org.id, inv.id).status is InvoiceStatus.PAID  # never backwards
    stored = hooks.database.payments.find_one({"_id": payment["_id"]})
    assert stored is not None and stored["status"] == PaymentStatus.SUCCEEDED.value


def test_the_same_event_delivered_concurrently_has_one_effect(hooks: Billing) -> None:
    _, _, payment = paid_through_webhook_setup(hooks)
    payload = event("payment_intent.succeeded", intent_object(hooks, payment))

    raced = in_threads([lambda: deliver(hooks, payload).outcome] * 12, timeout=120)

    assert raced.errors == []
    results = raced.results
    assert results.count(WebhookOutcome.PROCESSED) == 1
    assert results.count(WebhookOutcome.DUPLICATE) == 11
    assert hooks.database.webhook_events.count_documents({}) == 1


@pytest.mark.parametrize("attack", ["tampered", "wrong_secret", "stale", "missing_header",
                                    "not_json"])
def test_forged_or_broken_webhooks_are_rejected_before_any_write(
    hooks: Billing, attack: str
) -> None:
    _, _, payment = paid_through_webhook_setup(hooks)
    payload = event("payment_intent.succeeded", intent_object(hooks, payment))
    before = dump(hooks.database)
    header: str | None = sign(payload, secret=SECRET)
    if attack == "tampered":
        payload = payload.replace(b'"succeeded"', b'"succeeded" ', 1)
    elif attack == "wrong_secret":
        header = sign(payload, secret="whsec_other")
    elif attack == "stale":
        header = sign(payload, secret=SECRET, timestamp=int(time.time()) - 3600)
    elif attack == "missing_header":
        header = None
    else:
        payload = b"{not json"
        header = sign(payload, secret=SECRET)

    result = hooks.webhooks.handle(payload, header)

    assert (result.outcome, result.http_status) == (WebhookOutcome.REJECTED, 400)
    assert dump(hooks.database) == before


def test_payment_method_detached_in_stripe_clears_the_default(hooks: Billing) -> None:
    org = hooks.orgs.create(name="A", currency="usd", per_conversation=1, per_started_minute=1)
    method = hooks.payment_methods.attach(org.id, "pm_card_visa", request_id="r-1")
    customer = hooks.orgs.get(org.id).stripe_customer_id
    payload = event("payment_method.detached",
                    {"id": method.stripe_id, "object": "payment_method", "customer": None},
                    previous={"customer": customer})

    assert deliver(hooks, payload).outcome is WebhookOutcome.PROCESSED

    assert hooks.orgs.get(org.id).default_payment_method_id is None
    doc = hooks.database.payment_methods.find_one({"_id": ObjectId(method.id)})
    assert doc is not None and doc["status"] == PaymentMethodStatus.DETACHED.value


def test_customer_deleted_detaches_everything_of_that_org_only(hooks: Billing) -> None:
    org = hooks.orgs.create(name="A", currency="usd", per_conversation=1, per_started_minute=1)
    other = hooks.orgs.create(name="B", currency="usd", per_conversation=1, per_started_minute=1)
    hooks.payment_methods.attach(org.id, "pm_card_visa", request_id="r-1")
    hooks.payment_methods.attach(org.id, "pm_card_visa", request_id="r-2")
    kept = hooks.payment_methods.attach(other.id, "pm_card_visa", request_id="r-1")
    customer = hooks.orgs.get(org.id).stripe_customer_id

    result = deliver(hooks, event("customer.deleted", {"id": customer, "object": "customer"}))

    assert result.outcome is WebhookOutcome.PROCESSED
    gone = hooks.orgs.get(org.id)
    assert gone.stripe_customer_id is None and gone.default_payment_method_id is None
    assert hooks.payment_methods.list(org.id) == []
    assert hooks.payment_methods.list(other.id) == [kept]


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: list[tuple[bytes, str]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((body, self.headers.get("Stripe-Signature", "")))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[bytes, str]]]]:
    _Receiver.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", _Receiver.received
    finally:
        server.shutdown()
        server.server_close()


def test_a_webhook_signed_by_localstripe_is_verified_and_applied_once(
    hooks: Billing, stripe_url: str, receiver: tuple[str, list[tuple[bytes, str]]]
) -> None:
    url, received = receiver
    form = urllib.parse.urlencode({"url": url, "secret": SECRET,
                                   "events[]": "payment_intent.succeeded"}).encode()
    urllib.request.urlopen(f"{stripe_url}/_config/webhooks/billing", data=form, timeout=10).close()
    org, inv, payment = paid_through_webhook_setup(hooks)
    deadline = time.monotonic() + 15
    while not received and time.monotonic() < deadline:
        time.sleep(0.1)
    assert received, "localstripe delivered no webhook"

    outcomes = [hooks.webhooks.handle(body, sig).outcome for body, sig in received * 2]

    assert WebhookOutcome.PROCESSED in outcomes
    assert hooks.invoices.get(org.id, inv.id).status is InvoiceStatus.PAID
    assert outcomes[len(received):] == [WebhookOutcome.DUPLICATE] * len(received)
