"""SIGTERM and SIGINT while a command runs: stop it the way Ctrl-C does, once.

cron, systemd and Kubernetes stop a job with SIGTERM, whose default action ends the process at
once: no audit record closed, no lease released. While `handled()` is active, the first SIGTERM
or SIGINT raises `Stopped` (a KeyboardInterrupt, so everything that cleans up after Ctrl-C does
the same for SIGTERM); signals after that one, or after the command's outcome was printed
(`outcome_shown()`), are ignored, so cleanup is not cut short and the process prints one
outcome and one exit code.

Python runs a signal handler wherever the main thread is, and where it is a finalizer (a
driver cursor's `__del__`, say) the raised `Stopped` is printed as "Exception ignored" and lost.
So long runs also call `check()` between orgs (their progress callback does), which raises
the same `Stopped` again: a lost one stops the run at the next org instead of never.
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
    signum: int | None = None  # a signal was turned into Stopped: later ones are ignored
    shown = False  # the outcome is printed: every later signal is ignored


_state = _State()


def _handle(signum: int, frame: FrameType | None) -> None:
    if _state.signum is not None or _state.shown:
        return
    _state.signum = signum
    raise Stopped(signum)


def check() -> None:
    """Raise `Stopped` if a signal came while the command ran (its first `Stopped` may have
    been raised inside a finalizer, where Python drops it). For points where a run may stop
    between units of work: a `Stopped` that was not lost has unwound past them already."""
    if _state.signum is not None and not _state.shown:
        raise Stopped(_state.signum)


def outcome_shown() -> None:
    """The command printed its outcome: from now on (closing connections, stopping the embedded
    database) signals no longer change what it prints or its exit code."""
    _state.shown = True


@contextlib.contextmanager
def handled() -> Iterator[None]:
    """Install the handlers for the duration of a command; the previous ones after. Only the
    main thread can (a `main()` called from another thread keeps Python's defaults)."""
    _state.signum, _state.shown = None, False
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
