"""Inputs at the public boundary, validated by pydantic into typed billing errors.

Fields take `Any` and run our own validators, so a float for money raises InvalidMoney with a
useful message rather than being coerced, and a dict such as {"$ne": None} never passes as a value.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Self, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError

from billing.domain import money
from billing.domain.periods import utc
from billing.errors import BillingError, InvalidInput, shown

MAX_TEXT = 500


def text(value: Any, *, name: str = "value", limit: int = MAX_TEXT) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{name} must be a non-empty string, got {type(value).__name__}")
    if len(value) > limit or "\x00" in value:
        raise InvalidInput(f"{name} must be at most {limit} characters without NUL bytes")
    try:
        value.encode()
    except UnicodeEncodeError as exc:  # a lone surrogate: MongoDB stores UTF-8 only
        raise InvalidInput(f"{name} must be valid Unicode text: it holds a lone surrogate "
                           f"({value[exc.start]!r}) at position {exc.start}") from None
    return value


def flag(value: Any, *, name: str) -> bool:
    """True or False, nothing else: `apply="false"` (truthy) must not charge or repair."""
    if not isinstance(value, bool):
        raise InvalidInput(f"{name} must be True or False, got {shown(value)}")
    return value


F = TypeVar("F", bound=Callable[..., Any])


def callback(value: F | None, *, name: str) -> F | None:
    """None or a callable: refused before a run writes, not by a TypeError after its first
    org committed."""
    if value is not None and not callable(value):
        raise InvalidInput(f"{name} must be None or a callable, got {shown(value)}")
    return value


def _named(fn: Any, name: str) -> AfterValidator:
    return AfterValidator(lambda v: fn(v, name=name))


Amount = Annotated[Any, AfterValidator(money.amount)]
Currency = Annotated[Any, AfterValidator(money.currency)]


class Input(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    @classmethod
    def parse(cls, **values: Any) -> Self:
        """Validate, raising the first problem as a billing error (never a ValidationError)."""
        try:
            return cls(**values)
        except ValidationError as exc:
            first = exc.errors()[0]
            cause = (first.get("ctx") or {}).get("error")
            field = ".".join(str(p) for p in first["loc"]) or cls.__name__
            if isinstance(cause, BillingError):
                raise type(cause)(f"{field}: {cause.message}") from None
            raise InvalidInput(f"{field}: {first['msg']}") from None


class NewOrg(Input):
    name: Annotated[Any, _named(text, "name")]
    currency: Currency
    per_conversation: Amount
    per_started_minute: Amount


class NewConversation(Input):
    started_at: Annotated[Any, _named(utc, "started_at")]
    ended_at: Annotated[Any, _named(utc, "ended_at")]
    external_id: Annotated[Any, _named(text, "external_id")] | None = None

    def model_post_init(self, _: Any) -> None:
        if self.ended_at < self.started_at:
            raise InvalidInput("ended_at must not be before started_at")

    @property
    def span(self) -> tuple[datetime, datetime]:
        return self.started_at, self.ended_at


class NewLineItem(Input):
    description: Annotated[Any, _named(text, "description")]
    quantity: Annotated[Any, AfterValidator(money.quantity)]
    unit_amount: Amount
    currency: Currency | None = None
