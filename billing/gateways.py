"""Payment gateways to pass as `Billing(..., gateway=...)`: Stripe, and a fake for tests."""

from __future__ import annotations

from billing._async.fake_gateway import AsyncFakeGateway
from billing._async.gateway import AsyncPaymentGateway
from billing._async.stripe_gateway import AsyncStripeGateway
from billing._sync.fake_gateway import FakeGateway
from billing._sync.gateway import PaymentGateway
from billing._sync.stripe_gateway import StripeGateway

__all__ = [
    "AsyncFakeGateway", "AsyncPaymentGateway", "AsyncStripeGateway", "FakeGateway",
    "PaymentGateway", "StripeGateway",
]
