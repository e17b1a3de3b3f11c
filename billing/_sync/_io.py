# Generated from billing/_async by tools/synchro.py: do not edit.
"""I/O primitives that differ between asyncio and threads (asyncio becomes time in _sync)."""

from __future__ import annotations

import time


def sleep(seconds: float) -> None:
    time.sleep(seconds)
