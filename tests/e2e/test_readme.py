"""Every Python block of the README runs as written, in order, in one namespace (the blocks
continue each other), on the embedded database: a renamed function breaks CI, not a reader."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", README.read_text(), flags=re.S | re.M)


def test_the_readme_has_python_blocks() -> None:
    assert len(python_blocks()) >= 3


def test_every_python_block_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    monkeypatch.setenv("BILLING_DATA_DIR", str(tmp_path / "data"))
    namespace: dict[str, object] = {"__name__": "readme"}
    try:
        for number, block in enumerate(python_blocks(), start=1):
            code = compile(block, f"README.md python block {number}", "exec")
            exec(code, namespace)  # noqa: S102 - the README's own code, as a reader runs it
    finally:
        embedded = namespace.get("embedded")
        stop = getattr(embedded, "stop", None)
        if callable(stop):
            stop()  # idempotent: a block that failed half-way leaves no server behind
    assert "summary" in namespace and "report" in namespace
