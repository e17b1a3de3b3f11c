"""Mapping between MongoDB documents and the public models (ObjectId <-> 24-hex string)."""

from __future__ import annotations

from typing import Any, TypeVar

from bson import ObjectId
from pydantic import BaseModel, ValidationError

from billing.domain.models import (
    Conversation,
    CreditNote,
    Invoice,
    LineItem,
    Org,
    Payment,
    PaymentMethod,
)
from billing.errors import UnreadableDocument

Doc = dict[str, Any]
M = TypeVar("M", bound=BaseModel)


def _read(model: type[M], data: Doc, what: str) -> M:
    """`data` as `model`, or UnreadableDocument naming the document and its first problem."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": str(exc)}
        field = ".".join(str(part) for part in first["loc"]) or "the document"
        raise UnreadableDocument(
            f"{what} {data.get('id')} breaks the data contract ({field}: {first['msg']}), so "
            "billing cannot read it and stopped there: fix or remove that document (the "
            "README's data contract says what each field must be), then repeat") from None


def _ids(doc: Doc, *names: str) -> Doc:
    out = dict(doc)
    out["id"] = str(out.pop("_id"))
    for name in names:
        if isinstance(out.get(name), ObjectId):
            out[name] = str(out[name])
    return out


def org(doc: Doc) -> Org:
    return _read(Org, _ids(doc), "org")


def conversation(doc: Doc) -> Conversation:
    return _read(Conversation, _ids(doc, "org_id", "line_item_id"), "conversation")


def line_item(doc: Doc) -> LineItem:
    return _read(LineItem, _ids(doc, "org_id", "invoice_id"), "line item")


def invoice(doc: Doc, items: list[Doc] | None = None) -> Invoice:
    data = _ids(doc, "org_id")
    if isinstance(key := data.get("resume_after"), dict):
        data["resume_after"] = _ids(key)
    data["line_items"] = tuple(line_item(d) for d in sorted(items or [], key=lambda d: d["_id"]))
    return _read(Invoice, data, "invoice")


def org_doc(value: Org) -> Doc:
    doc = value.model_dump(exclude={"id"})
    doc["_id"] = ObjectId(value.id)
    return doc


def line_item_doc(value: LineItem) -> Doc:
    doc = value.model_dump(mode="python", exclude={"id"})
    doc.update(_id=ObjectId(value.id), org_id=ObjectId(value.org_id),
               invoice_id=ObjectId(value.invoice_id), kind=value.kind.value)
    return doc


def invoice_doc(value: Invoice) -> Doc:
    """The invoice's own fields; its line items live in their own collection."""
    doc = value.model_dump(mode="python", exclude={"id", "line_items"})
    doc.update(_id=ObjectId(value.id), org_id=ObjectId(value.org_id), status=value.status.value)
    if value.resume_after is not None:  # `_id` an ObjectId, so it compares as the index does
        key = value.resume_after
        doc["resume_after"] = {"ended_at": key.ended_at, "_id": ObjectId(key.id),
                               "span_ms": key.span_ms}
    return doc


def payment_method(doc: Doc) -> PaymentMethod:
    return _read(PaymentMethod, _ids(doc, "org_id"), "payment method")


def payment(doc: Doc) -> Payment:
    return _read(Payment, _ids(doc, "org_id", "invoice_id", "payment_method_id"), "payment")


def credit_note(doc: Doc) -> CreditNote:
    data = _ids(doc, "org_id", "invoice_id")
    data["lines"] = tuple({**line, "line_item_id": str(line["line_item_id"])}
                          for line in data.get("lines") or ())
    if isinstance(refund := data.get("refund"), dict):
        data["refund"] = {**refund, "payment_id": str(refund["payment_id"])}
    return _read(CreditNote, data, "credit note")


def credit_note_doc(value: CreditNote) -> Doc:
    doc = value.model_dump(mode="python", exclude={"id"})
    doc.update(_id=ObjectId(value.id), org_id=ObjectId(value.org_id),
               invoice_id=ObjectId(value.invoice_id), status=value.status.value,
               reason=value.reason.value, settlement=value.settlement.value,
               lines=[{"line_item_id": ObjectId(li.line_item_id), "amount": li.amount}
                      for li in value.lines])
    if value.refund is not None:
        doc["refund"] = {**doc["refund"], "payment_id": ObjectId(value.refund.payment_id),
                         "status": value.refund.status.value}
    return doc
