"""SIGTERM and SIGINT while a command runs: stop it the way Ctrl-C does, once.

cron, systemd and Kubernetes stop a job with SIGTERM, whose default action ends the process at
once: no audit record closed, no lease released. While `handled()` is active, the first SIGTERM
or SIGINT raises `Stopped` (a KeyboardInterrupt, so everything that cleans up after Ctrl-C does
the same for SIGTERM); signals after that one, or after the command's outcome was printed
(`outcome_shown()`), are ignored, so cleanup is not cut short and the process prints one
outcome and one exit code.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

HANDLED = (signal.SIGTERM, signal.SIGINT)


class Stopped(KeyboardInterrupt):
    """The command was stopped by a signal; `exit_code` is 128 + its number, as shells report."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.exit_code = 128 + signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")


class _State:
    stopping = False  # a signal was turned into Stopped: later ones are ignored
    shown = False  # the outcome is printed: every later signal is ignored


_state = _State()


def _handle(signum: int, frame: FrameType | None) -> None:
    if _state.stopping or _state.shown:
        return
    _state.stopping = True
    raise Stopped(signum)


def outcome_shown() -> None:
    """The command printed its outcome: from now on (closing connections, stopping the embedded
    database) signals no longer change what it prints or its exit code."""
    _state.shown = True


@contextlib.contextmanager
def handled() -> Iterator[None]:
    """Install the handlers for the duration of a command; the previous ones after. Only the
    main thread can (a `main()` called from another thread keeps Python's defaults)."""
    _state.stopping = _state.shown = False
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # A signal the process was started with ignored (e.g. SIGINT for a background job) stays so.
    previous = {s: signal.signal(s, _handle) for s in HANDLED
                if signal.getsignal(s) is not signal.SIG_IGN}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
