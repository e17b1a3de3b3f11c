"""The layers hold: services reach the database only through billing/_async/repositories.

A service module (billing/_async/*.py, the sync twins are generated from them) imports no
pymongo, opens no collection (`.db[`, `.db.`, `uow.client`) and does not name collections or
build queries (`billing.adapters.schema`, `billing.adapters.queries`): every query, hint and
write lives in a repository, where errors are translated and tenant reads carry `org_id`.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ASYNC = Path(__file__).resolve().parents[2] / "billing" / "_async"

# The edge itself: the transaction seam, the composition root, schema management and the
# payment gateways (Stripe's client, and the fake that stands in for it).
EDGE = {"unit_of_work.py", "client.py", "schema_setup.py", "migrations.py",
        "stripe_gateway.py", "fake_gateway.py", "gateway.py", "__init__.py"}
QUERIES = {"schema", "queries"}  # collection names and query shapes: repositories' business
DATABASE = re.compile(r"\.db\[|\.db\.|\b_?uow\.(db|client)\b")


def services() -> list[Path]:
    return sorted(p for p in ASYNC.glob("*.py") if p.name not in EDGE)


def leaks(path: Path) -> list[str]:
    """What in the module reaches past the repositories."""
    found = []
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == "pymongo"]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "pymongo":
            found.append(f"from {node.module}")
        elif isinstance(node, ast.ImportFrom) and node.module == "billing.adapters":
            found += [f"billing.adapters.{a.name}" for a in node.names if a.name in QUERIES]
        elif isinstance(node, ast.ImportFrom) and node.module in {
                f"billing.adapters.{q}" for q in QUERIES}:
            found.append(f"from {node.module}")
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if DATABASE.search(line):
            found.append(f"line {number}: {line.strip()}")
    return found


@pytest.mark.parametrize("path", services(), ids=lambda p: p.name)
def test_a_service_reaches_the_database_only_through_repositories(path: Path) -> None:
    assert leaks(path) == [], f"{path.name} reaches the database itself"


def test_the_guard_sees_each_kind_of_leak(tmp_path: Path) -> None:
    module = tmp_path / "leaky.py"
    module.write_text("from pymongo import ReturnDocument\nimport pymongo.errors\n"
                      "from billing.adapters import schema, writes\n"
                      "from billing.adapters.queries import unbilled\n"
                      "x = ctx.uow.db['orgs']\ny = self._uow.client\n")
    assert len(leaks(module)) == 6
