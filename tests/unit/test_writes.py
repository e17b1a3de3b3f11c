"""Writes derived from old and new invoice state, guarded by version; counts checked."""

from __future__ import annotations

from typing import Literal

import pytest
from bson import ObjectId

from billing.adapters import schema
from billing.adapters.writes import StaleRead, Write, check_counts, invoice_changes
from billing.domain.models import InvoiceStatus, LineItemKind
from tests.unit.factories import invoice, line_item, org


def test_a_new_invoice_and_its_items_are_inserted_at_version_0() -> None:
    acme = org()
    inv = invoice(acme, version=5)
    fee = line_item(inv, unit_amount=300)
    inv = inv.model_copy(update={"line_items": (fee,), "subtotal": 300, "total": 300})
    first, second = invoice_changes(None, inv)
    assert (first.collection, first.op, first.filter) == (schema.INVOICES, "insert", {})
    assert first.doc["_id"] == ObjectId(inv.id) and first.doc["org_id"] == ObjectId(acme.id)
    assert first.doc["version"] == 0
    assert (first.doc["status"], first.doc["total"]) == ("draft", 300)
    assert "line_items" not in first.doc and "id" not in first.doc
    assert (second.collection, second.op) == (schema.LINE_ITEMS, "insert")
    assert second.doc["_id"] == ObjectId(fee.id)
    assert (second.doc["org_id"], second.doc["invoice_id"]) == (ObjectId(acme.id),
                                                                ObjectId(inv.id))
    assert second.doc["kind"] == "manual" and second.doc["amount"] == 300


def test_an_existing_invoice_is_updated_under_its_version() -> None:
    acme = org()
    old = invoice(acme, version=3)
    new = old.model_copy(update={"status": InvoiceStatus.VOID})
    [update] = invoice_changes(old, new)
    assert (update.collection, update.op, update.expect) == (schema.INVOICES, "update_one", 1)
    assert update.filter == {"_id": ObjectId(old.id), "org_id": ObjectId(acme.id), "version": 3}
    fields = update.doc["$set"]
    assert fields["version"] == 4 and fields["status"] == "void"
    assert "_id" not in fields and "line_items" not in fields
    assert set(update.doc) == {"$set"}


def test_line_items_are_inserted_updated_and_deleted_by_difference() -> None:
    acme = org()
    base = invoice(acme)
    kept = line_item(base, unit_amount=100)
    changed = line_item(base, kind=LineItemKind.CONVERSATIONS, quantity=1, unit_amount=10)
    gone = line_item(base, unit_amount=7)
    old = invoice(acme, id=base.id, items=(kept, changed, gone), version=1)
    grown = changed.model_copy(update={"quantity": 5, "amount": 50})
    added = line_item(base, unit_amount=1)
    new = invoice(acme, id=base.id, items=(kept, grown, added), version=1)
    writes = invoice_changes(old, new)
    by_op = {(w.collection, w.op): w for w in writes}
    assert len(writes) == 4  # the invoice, one insert, one update, one delete; `kept` untouched
    assert by_op[(schema.LINE_ITEMS, "insert")].doc["_id"] == ObjectId(added.id)
    update = by_op[(schema.LINE_ITEMS, "update_one")]
    assert update.filter == {"_id": ObjectId(changed.id), "org_id": ObjectId(acme.id)}
    assert update.doc["$set"]["quantity"] == 5 and update.doc["$set"]["amount"] == 50
    assert "_id" not in update.doc["$set"]
    delete = by_op[(schema.LINE_ITEMS, "delete_one")]
    assert delete.filter == {"_id": ObjectId(gone.id), "org_id": ObjectId(acme.id)}
    assert delete.expect == 1


def test_an_unchanged_invoice_still_bumps_its_version() -> None:
    # Callers skip writing when nothing changed (plans.bill_chunk compares first).
    old = invoice(org(), version=0)
    [update] = invoice_changes(old, old)
    assert update.doc["$set"]["version"] == 1


Op = Literal["insert", "update_one", "update_many", "delete_one"]


def writes_of(*ops: tuple[Op, int]) -> list[Write]:
    return [Write(schema.INVOICES, op, {"org_id": 1}, {}, expect=n) for op, n in ops]


def test_check_counts_accepts_exact_counts() -> None:
    writes = writes_of(("insert", 1), ("update_one", 1), ("update_many", 7), ("delete_one", 1))
    check_counts(writes, matched=8, deleted=1)
    check_counts([], matched=0, deleted=0)
    check_counts(writes_of(("insert", 1)), matched=0, deleted=0)


@pytest.mark.parametrize("matched, deleted", [(7, 1), (9, 1), (8, 0), (8, 2), (0, 0)])
def test_check_counts_raises_stale_read_on_any_mismatch(matched: int, deleted: int) -> None:
    writes = writes_of(("update_one", 1), ("update_many", 7), ("delete_one", 1))
    with pytest.raises(StaleRead, match=f"matched {matched}/8, deleted {deleted}/1"):
        check_counts(writes, matched=matched, deleted=deleted)
