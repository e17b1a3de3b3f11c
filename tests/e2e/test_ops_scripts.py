"""What an operator runs first: the scripts (cron-nightly stopped by Ctrl-C or SIGTERM, run
through a symlink, a half-built .venv, repair's usage) and `setup --shard` on a server that is
not a mongos (refused before anything is written)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from billing import Billing
from billing.gateways import FakeGateway
from tests.support.billing_data import closed_month_invoice

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in {"MONGODB_URI", "BILLING_FAULTS", "STRIPE_API_KEY", "STRIPE_API_BASE"}}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


# --- 1. cron-nightly goes on to `reconcile --apply` after collect was stopped by Ctrl-C ---------

class HangingStripe:
    """A TCP server standing in for api.stripe.com: the first request hangs (a slow Stripe),
    every later one is closed at once. `first` is set when the first request arrives."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.first = threading.Event()
        self.held: list[socket.socket] = []
        self.stop = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            if not self.first.is_set():
                self.held.append(conn)  # never answered
                self.first.set()
            else:
                conn.close()

    def close(self) -> None:
        self.stop = True
        for c in self.held:
            c.close()
        self.sock.close()


def due_for_collection(client: MongoClient[dict[str, Any]], db_name: str) -> Billing:
    """An open invoice of the last closed month with a default card: collect --apply charges
    it."""
    b = Billing(client, database=db_name, gateway=FakeGateway())
    b.setup()
    closed_month_invoice(b, conversations=3, token="pm_card_visa")
    return b


def test_ctrl_c_during_collect_stops_cron_nightly_before_reconcile_apply(
    mongo_uri: str, db_name: str, client: MongoClient[dict[str, Any]]
) -> None:
    b = due_for_collection(client, db_name)
    stripe = HangingStripe()
    try:
        env = cli_env(STRIPE_API_KEY="sk_test_x",
                      STRIPE_API_BASE=f"http://127.0.0.1:{stripe.port}")
        # An operator runs the nightly job by hand in a terminal ...
        proc = subprocess.Popen([str(ROOT / "scripts" / "cron-nightly"), "--uri", mongo_uri,
                                 "--database", db_name], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env,
                                start_new_session=True)
        # ... and presses Ctrl-C while collect --apply waits for Stripe: the terminal sends
        # SIGINT to the foreground process group (the script and its current command).
        assert stripe.first.wait(90), "collect never called Stripe"
        time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=180)
    finally:
        stripe.close()

    lines = [json.loads(line) for line in out.splitlines()]
    # collect stopped as Ctrl-C asks (passed on as SIGTERM: a background step ignores SIGINT)
    assert lines[1]["exit_code"] in (130, 143), (out, err)
    assert proc.returncode == 130, (out, err)
    # Stopped means stopped: the job must not go on to repair (write) after Ctrl-C.
    assert len(lines) == 2, f"cron-nightly ran reconcile --apply after Ctrl-C: {out}"
    assert b.database.reconciliation_runs.count_documents({}) == 0


def test_a_collect_terminated_by_sigterm_stops_cron_nightly_before_reconcile_apply(
    tmp_path: Path
) -> None:
    """The same, isolated from Stripe and the database: the steps are stand-ins that behave as
    `billing` does (exit 143 when SIGTERM stops collect, e.g. `kill <pid>` by an operator or
    a supervisor's per-process stop); cron-nightly's own comment treats 130 and 143 from the
    invoice run as "stopped" and skips the rest, but not from collect."""
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    shutil.copy(ROOT / "scripts" / "cron-nightly", scripts / "cron-nightly")
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    log = tmp_path / "log"
    stub = "#!/usr/bin/env bash\necho \"$(basename \"$0\") $*\" >>\"$LOG\"\n" \
           "echo '{\"step\": \"'$(basename \"$0\")'\", \"exit_code\": '%d'}'\nexit %d\n"
    (scripts / "invoice-run").write_text(stub % (0, 0))
    (scripts / "collect").write_text(stub % (143, 143))
    (scripts / "repair").write_text(stub % (0, 0))
    for f in scripts.iterdir():
        f.chmod(0o755)

    result = subprocess.run([str(scripts / "cron-nightly")], capture_output=True, text=True,
                            env=cli_env(LOG=str(log), STRIPE_API_KEY="sk_test_x"), timeout=60,
                            check=False)

    assert result.returncode == 143, result
    steps = [line.split()[0] for line in log.read_text().splitlines()]
    assert steps == ["invoice-run", "collect"], f"ran after a terminated collect: {steps}"


# --- 2. `setup --shard` on a non-mongos installs the schema, then "refuses" ---------------------

def test_setup_shard_against_a_non_mongos_leaves_the_database_as_it_was(
    mongo_uri: str, db_name: str, client: MongoClient[dict[str, Any]]
) -> None:
    assert client[db_name].list_collection_names() == []
    result = subprocess.run([sys.executable, "-m", "billing.cli", "--uri", mongo_uri,
                             "--database", db_name, "setup", "--shard", "--json"],
                            capture_output=True, text=True, timeout=120, env=cli_env(),
                            cwd=ROOT, check=False)

    assert result.returncode == 3 and "mongos" in result.stderr, result
    # docs/scaling.md: "Run against anything but a mongos it refuses with exit 3"; bad input
    # leaves the database as it was. Here every collection, index and migration was written.
    assert client[db_name].list_collection_names() == [], \
        f"written before refusing: {sorted(client[db_name].list_collection_names())}"


# --- 3. scripts run through a symlink --------------------------------------------------------

def test_cron_nightly_run_through_a_symlink_finds_its_repo(tmp_path: Path) -> None:
    """`ln -s /path/to/repo/scripts/cron-nightly /etc/cron.daily/billing` (or ~/bin): the
    script looks for .venv and its sibling scripts next to the link, not next to itself."""
    link = tmp_path / "billing-nightly"
    link.symlink_to(ROOT / "scripts" / "cron-nightly")
    env = cli_env(PATH="/usr/local/bin:/usr/bin:/bin")  # cron's PATH
    env.pop("PYTHONPATH")
    unreachable = "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300"

    direct = subprocess.run([str(ROOT / "scripts" / "cron-nightly"), "--uri", unreachable],
                            capture_output=True, text=True, env=env, timeout=120, check=False)
    linked = subprocess.run([str(link), "--uri", unreachable], capture_output=True, text=True,
                            env=env, timeout=120, check=False)

    # Direct: the invoice run reports the unreachable database (one JSON line, exit 3).
    assert direct.returncode == 3 and json.loads(direct.stdout)["exit_code"] == 3
    # Through the link: it never gets that far ("cannot import billing to compute the period").
    assert "cannot import billing" not in linked.stderr, linked.stderr
    assert linked.stdout == direct.stdout


def test_repair_run_through_a_symlink_uses_the_repo_venv(tmp_path: Path) -> None:
    link = tmp_path / "billing-repair"
    link.symlink_to(ROOT / "scripts" / "repair")
    env = cli_env(PATH="/usr/local/bin:/usr/bin:/bin")
    env.pop("PYTHONPATH")

    result = subprocess.run([str(link), "--help"], capture_output=True, text=True, env=env,
                            timeout=120, check=False, cwd=tmp_path)

    assert result.returncode == 0, (result.returncode, result.stderr)  # 127: billing: not found


# --- 4. a half-built .venv is never repaired ---------------------------------------------------

def test_a_venv_left_without_pip_is_rebuilt_or_the_error_says_what_to_do(tmp_path: Path) -> None:
    """`python3 -m venv .venv` interrupted during ensurepip (Ctrl-C on the first scripts/demo,
    which takes seconds there), or failing on Debian without python3.X-venv ("ensurepip is not
    available"), leaves .venv/bin/python without pip. ensure_venv then skips creating the venv
    (its python exists) and fails on `pip install` on every later run, whatever the operator
    fixed, with only "No module named pip"."""
    (tmp_path / "scripts" / "lib").mkdir(parents=True)
    for name in ("pyproject.toml", "constraints.txt", "scripts/lib/venv.sh"):
        shutil.copy(ROOT / name, tmp_path / name)
    base = Path(os.path.realpath(sys.executable))  # the interpreter behind the repo's venv
    subprocess.run([str(base), "-m", "venv", "--without-pip", str(tmp_path / ".venv")],
                   check=True)
    # No index reachable: a repaired venv fails later, at the download, not at "no pip".
    env = cli_env(PIP_INDEX_URL="http://127.0.0.1:9/simple", PIP_RETRIES="0", PIP_TIMEOUT="2",
                  PYTHON=str(base))

    result = subprocess.run(["bash", "-c", ". scripts/lib/venv.sh && ensure_venv embedded"],
                            cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300,
                            check=False)

    repaired = subprocess.run([str(tmp_path / ".venv" / "bin" / "python"), "-m", "pip",
                               "--version"], capture_output=True, check=False).returncode == 0
    advised = ".venv" in result.stderr and any(
        w in result.stderr for w in ("rm -rf", "remove", "delete"))
    assert repaired or advised, result.stderr


# --- 1b. SIGTERM to the script (not its whole group) never reaches the running step ------------

def test_sigterm_to_cron_nightly_stops_the_running_collect_as_documented(
    mongo_uri: str, db_name: str, client: MongoClient[dict[str, Any]]
) -> None:
    """systemd's KillMode=mixed, `docker stop`/Kubernetes (the script as the container's
    command) and `kill <pid>` send SIGTERM to the script's pid only. The README promises
    SIGTERM is "handled like Ctrl-C: collect --apply records its run failed and releases its
    lease"; but bash dies at once (or, as PID 1, ignores it) and the step it was running goes
    on, unsignalled, until it finishes or is SIGKILLed (record left `running`)."""
    b = due_for_collection(client, db_name)
    stripe = HangingStripe()
    env = cli_env(STRIPE_API_KEY="sk_test_x", STRIPE_API_BASE=f"http://127.0.0.1:{stripe.port}")
    proc = subprocess.Popen([str(ROOT / "scripts" / "cron-nightly"), "--uri", mongo_uri,
                             "--database", db_name], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        assert stripe.first.wait(90), "collect never called Stripe"
        time.sleep(0.5)
        os.kill(proc.pid, signal.SIGTERM)  # the script's pid, as a supervisor does
        proc.communicate(timeout=60)
        # The collect run should stop as SIGTERM asks: its record closed, its lease released.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            runs = list(b.database.collection_runs.find({}, {"status": 1}))
            if runs and all(r["status"] != "running" for r in runs):
                break
            time.sleep(0.5)
        assert runs and all(r["status"] != "running" for r in runs), \
            f"collect still running 15 s after SIGTERM to cron-nightly: {runs}"
    finally:
        with_pid = proc.pid
        try:
            os.killpg(with_pid, signal.SIGKILL)  # the orphaned step, if any (our own group)
        except ProcessLookupError:
            pass
        stripe.close()


# --- 5. scripts/repair's usage lists checks that no longer are all of them -----------------------

def test_scripts_repair_usage_lists_every_check_kind() -> None:
    import re

    from billing.reconcile_findings import Check

    header = (ROOT / "scripts" / "repair").read_text().split("set -euo", 1)[0]
    words = set(re.findall(r"[a-z_]+", header))
    missing = [c.value for c in Check if c.value not in words]
    assert missing == [], f"scripts/repair's KIND list lacks {missing}"


def _stamped_venv(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "scripts" / "lib").mkdir(parents=True)
    for name in ("pyproject.toml", "constraints.txt", "scripts/lib/venv.sh"):
        shutil.copy(ROOT / name, tmp_path / name)
    base = Path(os.path.realpath(sys.executable))
    # A working venv with pip, its packages installed and stamped (as scripts/test leaves it).
    subprocess.run([str(base), "-m", "venv", str(tmp_path / ".venv")], check=True)
    py = tmp_path / ".venv" / "bin" / "python"
    site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True).stdout.strip()
    marker = Path(site) / "installed_marker.py"  # stands for billing's installed dependencies
    marker.write_text("X = 1\n")
    want = subprocess.run(
        [str(py), "-c", 'import hashlib; print(hashlib.sha256(open("pyproject.toml", "rb")'
         '.read() + open("constraints.txt", "rb").read()).hexdigest())'],
        cwd=tmp_path, capture_output=True, text=True, check=True).stdout.strip()
    (tmp_path / ".venv" / ".billing-stamp-test").write_text(want + "\n")
    return base, marker


def test_a_pip_config_error_does_not_wipe_a_working_venv(tmp_path: Path) -> None:
    base, marker = _stamped_venv(tmp_path)
    bad = tmp_path / "pip.conf"
    bad.write_text("[global\nindex-url = https://pypi.org/simple\n")  # a typo in pip.conf
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PYTHON=str(base), PIP_CONFIG_FILE=str(bad),
               PIP_INDEX_URL="http://127.0.0.1:9/simple", PIP_RETRIES="0", PIP_TIMEOUT="2")

    result = subprocess.run(["bash", "-c", ". scripts/lib/venv.sh && ensure_venv test"],
                            cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300,
                            check=False)

    # The venv was working and stamped: nothing to do.
    assert marker.exists(), f"working .venv wiped by venv --clear: {result.stderr}"
    assert result.returncode == 0, result.stderr
