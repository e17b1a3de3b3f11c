"""I/O primitives that differ between asyncio and threads (asyncio becomes time in _sync)."""

from __future__ import annotations

import asyncio


async def sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)
