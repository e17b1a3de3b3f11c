"""The embedded database's refusals that need no server."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from billing.embedded import EmbeddedDatabase
from billing.errors import ConfigurationError


def test_without_the_extra_the_hint_names_both_ways_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "secantus", None)  # `import secantus` raises ImportError

    with pytest.raises(ConfigurationError) as caught, EmbeddedDatabase(tmp_path):
        pass

    message = caught.value.message
    assert "pip install 'billing[embedded]'" in message  # installed as a package
    assert "pip install '.[embedded]'" in message  # from a clone
    assert "MONGODB_URI" in message
