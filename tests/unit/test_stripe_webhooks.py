"""Webhook deliveries are accepted only when signed, fresh and well formed."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest
import stripe

from billing.adapters.stripe_webhooks import StripeEvent, sign, verify
from billing.errors import InvalidInput, WebhookRejected

SECRET = "whsec_test_secret"
NOW = 1_800_000_000


def payload(**overrides: Any) -> bytes:
    """An event's JSON; an override of `...` leaves that field out."""
    event: dict[str, Any] = {
        "id": "evt_1", "object": "event", "type": "payment_intent.succeeded", "created": NOW,
        "livemode": False, "data": {"object": {"id": "pi_1", "amount": 1234}},
    }
    event.update(overrides)
    return json.dumps({k: v for k, v in event.items() if v is not ...}, indent=2).encode()


def rejected(body: bytes, header: str | None, **kw: Any) -> str:
    kw.setdefault("now", NOW)
    with pytest.raises(WebhookRejected) as caught:
        verify(body, header, secret=kw.pop("secret", SECRET), **kw)
    assert not caught.value.retryable
    return caught.value.message


def test_a_signed_fresh_event_is_accepted() -> None:
    body = payload(data={"object": {"id": "cus_1"}, "previous_attributes": {"name": "Old"}})

    event = verify(body, sign(body, secret=SECRET, timestamp=NOW), secret=SECRET, now=NOW + 10)

    assert event == StripeEvent(id="evt_1", type="payment_intent.succeeded", created=NOW,
                                data_object={"id": "cus_1"}, livemode=False,
                                previous_attributes={"name": "Old"})


def test_previous_attributes_default_to_empty() -> None:
    body = payload()
    event = verify(body, sign(body, secret=SECRET, timestamp=NOW), secret=SECRET, now=NOW)
    assert event.previous_attributes == {} and event.data_object["amount"] == 1234


def test_sign_matches_stripes_own_verification() -> None:
    body = payload()
    header = sign(body, secret=SECRET)
    assert stripe.Webhook.construct_event(body, header, SECRET).id == "evt_1"
    assert header.startswith("t=") and ",v1=" in header


def test_a_header_made_the_way_localstripe_makes_it_is_accepted() -> None:
    body = payload()
    mac = hmac.new(SECRET.encode(), b"%d.%s" % (NOW, body), hashlib.sha256).hexdigest()
    assert verify(body, f"t={NOW},v1={mac}", secret=SECRET, now=NOW).id == "evt_1"


def test_one_matching_signature_among_several_is_enough() -> None:
    # During a secret roll Stripe signs with the old and the new secret.
    body = payload()
    other = sign(body, secret="whsec_old", timestamp=NOW).split(",")[1]
    header = f"{sign(body, secret=SECRET, timestamp=NOW)},{other}"
    assert verify(body, header, secret=SECRET, now=NOW).id == "evt_1"


@pytest.mark.parametrize("header", [None, ""])
def test_a_missing_header_is_rejected(header: str | None) -> None:
    assert "no Stripe-Signature header" in rejected(payload(), header)


@pytest.mark.parametrize("header", ["garbage", "v1=abc", "t=abc,v1=abc"])
def test_a_header_without_a_timestamp_is_rejected(header: str) -> None:
    assert "no t=<timestamp>" in rejected(payload(), header)


def test_a_header_without_a_v1_signature_is_rejected() -> None:
    assert "does not match" in rejected(payload(), f"t={NOW},v0=abc")


def test_a_bad_signature_is_rejected() -> None:
    assert "does not match" in rejected(payload(), f"t={NOW},v1={'0' * 64}")


def test_the_wrong_secret_is_rejected() -> None:
    body = payload()
    header = sign(body, secret="whsec_someone_else", timestamp=NOW)
    assert "another secret" in rejected(body, header)


def test_a_tampered_body_is_rejected() -> None:
    body = payload()
    header = sign(body, secret=SECRET, timestamp=NOW)
    assert "altered" in rejected(body.replace(b"1234", b"1"), header)


def test_a_reserialised_body_is_rejected() -> None:
    # Same JSON, other bytes: why verification must see the raw body.
    body = payload()
    header = sign(body, secret=SECRET, timestamp=NOW)
    assert "does not match" in rejected(json.dumps(json.loads(body)).encode(), header)


def test_a_signature_moved_to_another_timestamp_is_rejected() -> None:
    body = payload()
    signature = sign(body, secret=SECRET, timestamp=NOW).split(",")[1]
    assert "does not match" in rejected(body, f"t={NOW + 1},{signature}")


@pytest.mark.parametrize("age", [301, 3600, -301])
def test_a_timestamp_outside_the_tolerance_is_rejected(age: int) -> None:
    body = payload()
    header = sign(body, secret=SECRET, timestamp=NOW - age)
    assert "tolerance" in rejected(body, header)


def test_the_tolerance_is_inclusive_and_configurable() -> None:
    body = payload()
    header = sign(body, secret=SECRET, timestamp=NOW - 300)
    assert verify(body, header, secret=SECRET, now=NOW).id == "evt_1"
    assert "60 s tolerance" in rejected(body, header, tolerance=60)


def test_now_defaults_to_the_clock() -> None:
    body = payload()
    assert verify(body, sign(body, secret=SECRET), secret=SECRET).id == "evt_1"
    with pytest.raises(WebhookRejected, match="tolerance"):
        verify(body, sign(body, secret=SECRET, timestamp=NOW - 10**6), secret=SECRET)


def test_an_empty_secret_is_rejected() -> None:
    body = payload()
    assert "no webhook secret" in rejected(body, sign(body, secret="x", timestamp=NOW),
                                           secret="")


@pytest.mark.parametrize("body", [b"{not json", b"", b"\xff\xfe{}"])
def test_a_signed_body_that_is_not_json_is_rejected(body: bytes) -> None:
    header = f"t={NOW},v1=" + hmac.new(SECRET.encode(), b"%d.%s" % (NOW, body),
                                       hashlib.sha256).hexdigest()
    message = rejected(body, header)
    assert "not JSON" in message or "not UTF-8" in message


@pytest.mark.parametrize("body", [b"[1, 2]", b'"evt"', b"null"])
def test_a_signed_body_that_is_not_an_object_is_rejected(body: bytes) -> None:
    assert "not a JSON object" in rejected(body, sign(body, secret=SECRET, timestamp=NOW))


@pytest.mark.parametrize(("overrides", "field"), [
    ({"id": ...}, "id"),
    ({"id": ""}, "id"),
    ({"type": ...}, "type"),
    ({"type": None}, "type"),
    ({"type": 3}, "type"),
    ({"created": "yesterday"}, "created"),
    ({"created": True}, "created"),
    ({"data": ...}, "data.object"),
    ({"data": {}}, "data.object"),
    ({"data": {"object": "pi_1"}}, "data.object"),
    ({"data": {"object": {}, "previous_attributes": []}}, "data.previous_attributes"),
    ({"livemode": "no"}, "livemode"),
])
def test_a_signed_event_missing_a_field_is_rejected(overrides: dict[str, Any], field: str
                                                    ) -> None:
    body = payload(**overrides)
    message = rejected(body, sign(body, secret=SECRET, timestamp=NOW))
    assert f"malformed {field}:" in message


def test_a_rejection_is_invalid_input() -> None:
    assert issubclass(WebhookRejected, InvalidInput)
