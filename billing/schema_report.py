"""What `setup` changed, or what `setup --check` finds different from the data contract. Pure.

The data contract (collections, validators, indexes) is `billing.adapters.schema`; its version
and the migrations that bring data from one version to the next are listed in
`billing._async.migrations`. A database's version is the highest migration recorded in its
`schema_migrations` collection (0: never set up).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from billing.adapters.schema import Collection, Index


@dataclass
class SchemaReport:
    version: int  # the database's schema version after this run (before it, for a check)
    target: int  # the version this code needs
    changes: list[str] = field(default_factory=list)  # what setup did, or what check would do
    applied: bool = False  # `changes` were made (setup), not found (check)

    @property
    def current(self) -> bool:
        """The database matches the contract and is at this code's version: for a check,
        nothing differs; after setup (which made every change or raised), its version is this
        code's, whatever setup had to change to get there."""
        return self.version == self.target and (self.applied or not self.changes)

    def as_json(self) -> dict[str, Any]:
        return {"schema_version": self.version, "target_version": self.target,
                "current": self.current, "changes": self.changes}


def index_drift(spec: Collection, existing: dict[str, dict[str, Any]]) -> list[tuple[Index, str]]:
    """Indexes of `spec` missing from `existing` (index_information() by name) or different:
    (index, what is wrong)."""
    out = []
    for index in spec.indexes:
        have = existing.get(index.name)
        if have is None:
            out.append((index, "missing"))
            continue
        keys = [(k, int(v)) for k, v in have.get("key", [])]
        if keys != index.keys or bool(have.get("unique", False)) != index.unique or \
                (have.get("partialFilterExpression") or None) != index.partial or \
                have.get("expireAfterSeconds") != index.expire_after:
            out.append((index, "different"))
    return out


def validator_differs(spec: Collection, options: dict[str, Any]) -> bool:
    """Whether a collection's validator (from listCollections options) is not the contract's."""
    return spec.validator is not None and options.get("validator") != spec.validator
