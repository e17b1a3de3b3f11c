"""Ids are ObjectIds or 24-hex strings; nothing else can reach a query."""

from __future__ import annotations

from typing import Any

import pytest
from bson import ObjectId

from billing.adapters.ids import object_id
from billing.errors import InvalidInput


@pytest.mark.parametrize("value", [
    {"$ne": None}, {"$gt": ""}, 0, 123456789012345678901234, None, True, 1.0,
    "a" * 23, "a" * 25, "", "z" * 24, "0123456789abcdef0123456g", " " + "a" * 23,
    b"\x00" * 12, ["65f0a1b2c3d4e5f6a7b8c9d0"], "\u0660" * 24,
])
def test_object_id_refuses_anything_else(value: Any) -> None:
    with pytest.raises(InvalidInput, match="org_id must be a 24-character hex id"):
        object_id(value, name="org_id")


def test_object_id_accepts_object_ids_and_hex_strings() -> None:
    oid = ObjectId()
    assert object_id(oid, name="org_id") is oid
    assert object_id(str(oid), name="org_id") == oid
    assert object_id(str(oid).upper(), name="org_id") == oid
    assert isinstance(object_id("65f0a1b2c3d4e5f6a7b8c9d0", name="x"), ObjectId)


def test_a_huge_value_is_not_echoed_whole() -> None:
    with pytest.raises(InvalidInput) as info:
        object_id("x" * 10_000, name="invoice_id")
    assert len(info.value.message) < 150 and info.value.message.endswith("...")
