"""Ids cross the public API as 24-hex strings and are ObjectIds in MongoDB.

Anything else (dicts such as {"$ne": None}, ints, short strings) is refused here, so user input
can never become a query operator.
"""

from __future__ import annotations

from typing import Any

from bson import ObjectId
from bson.errors import InvalidId

from billing.errors import InvalidInput, shown


def object_id(value: Any, *, name: str) -> ObjectId:
    if isinstance(value, ObjectId):
        return value
    if isinstance(value, str) and len(value) == 24:
        try:
            return ObjectId(value)
        except InvalidId:
            pass
    raise InvalidInput(f"{name} must be a 24-character hex id, got {shown(value)}")
