"""Verify Stripe webhook deliveries (and sign payloads, for tests and tools).

The signature is an HMAC-SHA256 of `"{timestamp}.{raw body}"` with the endpoint's secret, sent
as `Stripe-Signature: t=...,v1=...`. It covers the exact bytes received: verify before any
parsing, and never re-serialise the body first.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

import stripe

from billing.errors import WebhookRejected


@dataclass(frozen=True, slots=True)
class StripeEvent:
    """A verified Stripe event: what the handlers need, as plain values."""

    id: str  # evt_...: deliveries of one event share it, so it is the deduplication key
    type: str  # e.g. "payment_intent.succeeded"
    created: int  # Unix seconds
    data_object: dict[str, Any]
    livemode: bool
    previous_attributes: dict[str, Any] = field(default_factory=dict)  # *.updated events only


def verify(
    payload: bytes, signature_header: str | None, *, secret: str, tolerance: int = 300,
    now: float | None = None,
) -> StripeEvent:
    """The event in `payload` (the raw request body) if `signature_header` signs it with
    `secret` at a time within `tolerance` seconds of `now` (default: the clock); otherwise
    WebhookRejected, whose message says why. Answer a rejection with 400: Stripe's retries of
    the same delivery would be rejected too.
    """
    if not secret:
        raise WebhookRejected("no webhook secret configured: set the endpoint's whsec_... secret")
    if not signature_header or not isinstance(signature_header, str):
        raise WebhookRejected("no Stripe-Signature header: only Stripe's signed deliveries are "
                              "accepted; pass the header's value unchanged")
    if not isinstance(payload, bytes | bytearray):
        raise WebhookRejected(f"the body must be the request's raw bytes, got "
                              f"{type(payload).__name__}: verify before any parsing")
    timestamp, signatures = _parse(signature_header)
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WebhookRejected("body is not UTF-8: Stripe sends UTF-8 JSON") from exc
    # The HMAC covers the very timestamp the tolerance is checked on (one `t`, parsed once).
    expected = hmac.new(secret.encode("utf-8", "surrogatepass"),
                        b"%d." % timestamp + payload, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, given) for given in signatures):
        raise WebhookRejected(
            "signature does not match: the body was altered (verify the raw bytes, before any "
            "parsing) or it was signed with another secret (check this endpoint's whsec_...)")
    clock = time.time() if now is None else now
    if abs(clock - timestamp) > tolerance:
        raise WebhookRejected(
            f"timestamp {timestamp} is {int(clock - timestamp)} s from now, beyond the "
            f"{tolerance} s tolerance: a replay, or a wrong clock here (check NTP)")
    return _event(payload)


def sign(payload: bytes, *, secret: str, timestamp: int | None = None) -> str:
    """A valid `Stripe-Signature` header for `payload` (default timestamp: now)."""
    when = int(time.time()) if timestamp is None else timestamp
    header: str = stripe.WebhookSignature.generate_signature_header(
        payload.decode("utf-8"), secret, when)
    return header


_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"[0-9a-f]{64}")


def _parse(header: str) -> tuple[int, list[str]]:
    """The header's one timestamp and its `v1` signatures, read strictly: a header Stripe
    would not send (two timestamps, odd characters, no v1) is rejected, so the timestamp the
    tolerance checks is the one the signature covers."""
    if not header.isascii():
        raise WebhookRejected("Stripe-Signature header is not ASCII: pass the header's value "
                              "unchanged")
    stamps, signatures = [], []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            stamps.append(value)
        elif key == "v1" and _SIGNATURE.fullmatch(value):
            signatures.append(value)
    if len(stamps) > 1:
        raise WebhookRejected("Stripe-Signature header has more than one t=<timestamp>: Stripe "
                              "sends one; pass the header's value unchanged")
    if not stamps or not _TIMESTAMP.fullmatch(stamps[0]):
        raise WebhookRejected("Stripe-Signature header has no t=<timestamp> (Unix seconds): "
                              "pass the header's value unchanged")
    return int(stamps[0]), signatures  # none well-formed: matches nothing


def _event(payload: bytes) -> StripeEvent:
    try:
        body = json.loads(payload)
    except ValueError as exc:  # JSONDecodeError and bad encodings alike
        raise WebhookRejected(f"body is not JSON ({exc}): nothing was applied") from exc
    if not isinstance(body, dict):
        raise WebhookRejected("body is not a JSON object: not a Stripe event")
    data = body.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    previous = data.get("previous_attributes", {}) if isinstance(data, dict) else {}
    event_id, kind, created = body.get("id"), body.get("type"), body.get("created")
    livemode = body.get("livemode", False)
    if not isinstance(event_id, str) or not event_id:
        raise _malformed("id")
    if not isinstance(kind, str) or not kind:
        raise _malformed("type")
    if not isinstance(created, int) or isinstance(created, bool):
        raise _malformed("created")
    if not isinstance(obj, dict):
        raise _malformed("data.object")
    if not isinstance(previous, dict):
        raise _malformed("data.previous_attributes")
    if not isinstance(livemode, bool):
        raise _malformed("livemode")
    return StripeEvent(id=event_id, type=kind, created=created, data_object=obj,
                       livemode=livemode, previous_attributes=previous)


def _malformed(name: str) -> WebhookRejected:
    return WebhookRejected(f"event has a missing or malformed {name}: not a Stripe event")
