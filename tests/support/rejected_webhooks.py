"""Webhook deliveries `webhooks.handle` must reject (400, nothing written), for the bad-input and
security tests: bad signatures, stale or future timestamps, missing headers, bodies that are not
Stripe events. Each case builds `(payload, signature_header)` when called, so timestamps are
fresh."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

from billing.adapters.stripe_webhooks import sign
from tests.support.isolation_world import WEBHOOK_SECRET

Delivery = Callable[[], tuple[Any, Any]]
TOLERANCE_S = 300  # billing's documented 5-minute tolerance


def event_body(**overrides: Any) -> bytes:
    body: dict[str, Any] = {"id": "evt_rejected_1", "object": "event",
                            "type": "payment_intent.succeeded", "created": int(time.time()),
                            "livemode": False, "data": {"object": {"id": "pi_1"}}}
    body.update(overrides)
    return json.dumps(body).encode()


def raw_signature(payload: bytes, *, secret: str = WEBHOOK_SECRET,
                  timestamp: int | None = None) -> str:
    """Stripe's scheme computed on raw bytes (works for bodies that are not UTF-8)."""
    when = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{when}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={when},v1={mac}"


def signed(payload: bytes, **kw: Any) -> tuple[bytes, str]:
    return payload, raw_signature(payload, **kw)


def _tampered() -> tuple[bytes, str]:
    payload = event_body()
    return payload.replace(b"pi_1", b"pi_2"), sign(payload, secret=WEBHOOK_SECRET)


def _no_v1() -> tuple[bytes, str]:
    return event_body(), f"t={int(time.time())}"


def _v0_only() -> tuple[bytes, str]:
    return event_body(), raw_signature(event_body()).replace("v1=", "v0=")


def _replayed(shape: str) -> Delivery:
    """A delivery signed a day ago, resent with a fresh second `t=` slipped into its header:
    the timestamp checked must be the one the signature covers."""
    def delivery() -> tuple[bytes, str]:
        payload, header = signed(event_body(), timestamp=int(time.time()) - 86400)
        old, mac = header.split(",")
        now = f"t={int(time.time())}"
        return payload, shape.format(old=old, now=now, mac=mac)
    return delivery


def rejected_deliveries() -> list[tuple[str, Delivery]]:
    return [
        ("wrong secret", lambda: signed(event_body(), secret="whsec_someone_else")),
        ("empty secret", lambda: signed(event_body(), secret="")),
        ("stale timestamp", lambda: signed(
            event_body(), timestamp=int(time.time()) - TOLERANCE_S - 60)),
        ("timestamp a day old", lambda: signed(event_body(), timestamp=int(time.time()) - 86400)),
        ("future timestamp", lambda: signed(
            event_body(), timestamp=int(time.time()) + TOLERANCE_S + 60)),
        ("timestamp 0", lambda: signed(event_body(), timestamp=0)),
        ("tampered body", _tampered),
        ("missing header", lambda: (event_body(), None)),
        ("empty header", lambda: (event_body(), "")),
        ("header without t=", lambda: (event_body(), "v1=" + "0" * 64)),
        ("header without v1=", _no_v1),
        ("header with v0 only", _v0_only),
        ("garbage header", lambda: (event_body(), "garbage")),
        ("1 MB header", lambda: (event_body(), "t=1,v1=" + "a" * 2**20)),
        ("empty payload", lambda: signed(b"")),
        ("non-JSON payload", lambda: signed(b"not json at all")),
        ("1 MB non-JSON payload", lambda: signed(b"x" * 2**20)),
        ("non-UTF-8 payload", lambda: signed(b"\xff\xfe{}")),
        ("JSON array", lambda: signed(b"[1, 2]")),
        ("JSON null", lambda: signed(b"null")),
        ("JSON string", lambda: signed(b'"evt_1"')),
        ("event without id", lambda: signed(event_body(id=None))),
        ("event id as operator", lambda: signed(event_body(id={"$ne": None}))),
        ("event without type", lambda: signed(event_body(type=""))),
        ("created as string", lambda: signed(event_body(created="yesterday"))),
        ("created as bool", lambda: signed(event_body(created=True))),
        ("data.object missing", lambda: signed(event_body(data={}))),
        ("data.object a list", lambda: signed(event_body(data={"object": []}))),
        ("previous_attributes a list", lambda: signed(
            event_body(data={"object": {}, "previous_attributes": []}))),
        ("livemode as string", lambda: signed(event_body(livemode="false"))),
        ("day-old signature, fresh t= first", _replayed(" {now},{old},{mac}")),
        ("day-old signature, odd t= first", _replayed("{old}=0,{now},{mac}")),
        ("day-old signature, fresh t= last", _replayed("{old},{mac},{now}")),
        ("non-ASCII signature", lambda: (event_body(), f"t={int(time.time())},v1=\xe9")),
        ("lone surrogate in header", lambda: (event_body(), f"t={int(time.time())},v1=\udc80")),
        ("superscript timestamp", lambda: (event_body(), "t=\u00b2,v1=" + "0" * 64)),
        ("5,000-digit timestamp", lambda: (event_body(), "t=" + "9" * 5000 + ",v1=" + "0" * 64)),
        ("payload None", lambda: (None, sign(event_body(), secret=WEBHOOK_SECRET))),
        ("payload a dict", lambda: ({"$ne": None}, sign(event_body(), secret=WEBHOOK_SECRET))),
    ]
