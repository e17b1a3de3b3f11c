"""Generate billing/_sync from billing/_async, the way pymongo generates its sync driver.

    python tools/synchro.py           # regenerate
    python tools/synchro.py --check   # CI: fail if billing/_sync differs from what it would be

The async code is the one source of truth; never edit billing/_sync by hand.
"""

from __future__ import annotations

import difflib
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import unasync

ROOT = Path(__file__).resolve().parent.parent
SOURCE, TARGET = ROOT / "billing" / "_async", ROOT / "billing" / "_sync"
HEADER = "# Generated from billing/_async by tools/synchro.py: do not edit.\n"
REPLACEMENTS = {
    "_async": "_sync",
    "asyncio": "time",
    "AsyncMongoClient": "MongoClient",
    "AsyncClientSession": "ClientSession",
    "asynchronous": "synchronous",
    "aclose": "close",
}


class _Rule(unasync.Rule):  # type: ignore[misc]
    def _unasync_name(self, name: str) -> str:
        # AsyncInvoices -> Invoices (unasync's default would give SyncInvoices).
        if name in self.token_replacements:
            return str(self.token_replacements[name])
        if len(name) > 5 and name.startswith("Async") and name[5].isupper():
            return name[5:]
        # stripe-python's async twins: client.v1.customers.create_async -> create.
        if name.endswith("_async") and len(name) > 6:
            return name[: -len("_async")]
        return name


def generate(out: Path) -> None:
    rule = _Rule(str(SOURCE), str(out), additional_replacements=REPLACEMENTS)
    files = sorted(str(p) for p in SOURCE.rglob("*.py"))
    unasync.unasync_files(files, [rule])
    for path in out.rglob("*.py"):
        text = path.read_text()
        text = text.replace('"""The async services: the source from which billing/_sync is '
                            'generated (tools/synchro.py)."""', '"""The sync services."""')
        # Awaitable[X] -> X: a sync callback returns its value.
        text = re.sub(r"Awaitable\[([^\[\]]+(?:\[[^\[\]]*\])?)\]", r"\1", text)
        path.write_text(HEADER + text)
    # Renamed imports sort differently and Awaitable goes unused: let ruff tidy them.
    pyproject = ROOT / "pyproject.toml"
    config = ["--config", str(pyproject)] if pyproject.exists() else []
    subprocess.run([sys.executable, "-m", "ruff", "check", "--quiet", *config, "--fix", "--select",
                    "I,F401", "--exit-zero", str(out)], check=True)


def main(argv: list[str]) -> int:
    if "--check" not in argv:
        generate(TARGET)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "_sync"
        generate(fresh)
        drift = []
        names = {str(p.relative_to(fresh)) for p in fresh.rglob("*.py")} | {
            str(p.relative_to(TARGET)) for p in TARGET.rglob("*.py")}
        for name in sorted(names):
            want = (fresh / name).read_text().splitlines() if (fresh / name).exists() else []
            have = (TARGET / name).read_text().splitlines() if (TARGET / name).exists() else []
            drift += difflib.unified_diff(have, want, f"billing/_sync/{name}", "generated",
                                          lineterm="")
    if drift:
        print("\n".join(drift[:200]))
        print("billing/_sync drifted from billing/_async: run python tools/synchro.py")
        return 1
    print("billing/_sync matches billing/_async")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
