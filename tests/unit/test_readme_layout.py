"""The README's layout section names every module, each under its own folder's heading."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Each folder's paragraph in the layout section begins with the line holding this text.
HEADINGS = {
    "billing": "Results and options",
    "billing/domain": "(`billing/domain`",
    "billing/plans": "(`billing/plans`",
    "billing/plans/reconciliation": "(`billing/plans`",
    "billing/_async": "(`billing/_async`,",
    "billing/_async/repositories": "(`billing/_async/repositories`",
    "billing/adapters": "(`billing/adapters`",
    "billing/cli": "(`billing/cli`",
}
SKIPPED = {"billing/__init__.py", "billing/cli/__main__.py", "billing/_async/__init__.py",
           "billing/_async/repositories/__init__.py", "billing/domain/__init__.py",
           "billing/adapters/__init__.py", "billing/plans/reconciliation/__init__.py"}


def layout() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("\n## Layout\n")
    end = text.find("\n## ", start + 1)
    return text[start:] if end == -1 else text[start:end]


def paragraph(folder: str) -> str:
    section = layout()
    start = section.index(HEADINGS[folder])
    end = section.find("\n\n", start)
    return section[start:] if end == -1 else section[start:end]


def modules() -> list[str]:
    found = []
    for folder in HEADINGS:
        for path in sorted((ROOT / folder).glob("*.py")):
            name = str(path.relative_to(ROOT))
            if name not in SKIPPED:
                found.append(name)
    return found


@pytest.mark.parametrize("module", modules())
def test_every_module_has_its_line_in_the_layout(module: str) -> None:
    folder, name = module.rsplit("/", 1)
    assert f"`{name}`" in paragraph(folder) or f"`{module.removeprefix('billing/')}`" in \
        paragraph(folder), f"README's layout section does not describe {module}"


def test_the_layout_names_no_module_that_is_gone() -> None:
    for folder in HEADINGS:
        text = paragraph(folder)
        named = {part.split("`")[0] for part in text.split("`")[1::2] if part.endswith(".py")}
        for name in named:
            candidates = [ROOT / folder / name, ROOT / "billing" / name,
                          *(ROOT / folder).glob(f"*/{name}")]
            assert any(p.exists() for p in candidates), f"{name} in {folder} no longer exists"
