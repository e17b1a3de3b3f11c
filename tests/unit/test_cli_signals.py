"""SIGTERM and SIGINT in the CLI (billing.cli.signals), and the exit-code list in the README
against the table that is `billing --help`."""

from __future__ import annotations

import io
import os
import re
import signal
from pathlib import Path

import pytest

from billing.cli import exit_codes, output, signals
from billing.invoice_runs import OrgResult, Outcome

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, exit_codes.TERMINATED),
                                              (signal.SIGINT, exit_codes.INTERRUPTED)])
def test_a_signal_stops_the_command_as_ctrl_c_does_with_its_exit_code(signum: int,
                                                                      code: int) -> None:
    with signals.handled(), pytest.raises(KeyboardInterrupt) as caught:
        os.kill(os.getpid(), signum)
    assert isinstance(caught.value, signals.Stopped) and caught.value.exit_code == code
    assert signal.Signals(signum).name in str(caught.value)


def test_only_the_first_signal_stops_and_none_once_the_outcome_is_shown() -> None:
    with signals.handled():
        with pytest.raises(signals.Stopped):
            os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)  # cleanup after the first is not cut short
    with signals.handled():
        signals.outcome_shown()
        os.kill(os.getpid(), signal.SIGTERM)  # e.g. while the embedded database stops


def test_the_previous_handlers_are_restored() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with signals.handled():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before


def test_the_readme_lists_the_exit_codes_of_the_help_table() -> None:
    text = README.read_text()
    paragraph = text[text.index("Exit codes (also in `billing --help`)"):]
    paragraph = paragraph[:paragraph.index("\n\n")]
    in_readme = {int(c) for c in re.findall(r"`(\d+)`", paragraph)}
    in_table = {int(c) for c in re.findall(r"^\s+(\d+)  [A-Z_]+", exit_codes.EPILOG, re.M)}
    assert in_readme == in_table == {0, 1, 2, 3, 4, 130, 143}


def test_a_signal_ignored_when_the_command_starts_stays_ignored() -> None:
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with signals.handled():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)  # nothing happens
    finally:
        signal.signal(signal.SIGINT, before)


class SignalsItself:
    """An object whose finalizer sends SIGTERM to this process: the handler runs inside the
    finalizer, where Python drops what it raises (as with a driver cursor's `__del__`)."""

    def __del__(self) -> None:
        os.kill(os.getpid(), signal.SIGTERM)


# The dropped Stopped is what these tests are about: Python reports it as unraisable.
LOST = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@LOST
def test_a_stop_lost_in_a_finalizer_stops_the_run_at_its_next_org() -> None:
    with signals.handled():
        SignalsItself()  # finalized at once: the Stopped it raised is printed and dropped
        bar = output.ProgressBar(io.StringIO(), "invoice run")
        with pytest.raises(signals.Stopped) as caught:
            bar(1, 3, OrgResult("org", Outcome.INVOICED))
    assert caught.value.exit_code == exit_codes.TERMINATED


@LOST
def test_check_raises_nothing_without_a_signal_or_once_the_outcome_is_shown() -> None:
    with signals.handled():
        signals.check()
        SignalsItself()
        signals.outcome_shown()
        signals.check()
