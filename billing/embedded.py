"""The embedded database: SecantusDB running inside this process, for the CLI.

SecantusDB (the `embedded` extra, GPL-2.0) is imported only when a database is
started, so `billing` itself works without it.

    with EmbeddedDatabase() as db:
        client = pymongo.MongoClient(db.uri)

Guarantees: a transaction whose commit returned survives the process being
killed (SIGKILL included), and only one process at a time uses a data
directory; a second one gets `ConfigurationError` instead of a corrupt store.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pathlib
from types import TracebackType
from typing import Any

from billing.errors import ConfigurationError

_MISSING_EXTRA = (
    "the embedded database needs the optional SecantusDB package (the `embedded` extra): "
    "pip install 'billing[embedded]' where billing is installed as a package, or "
    "pip install '.[embedded]' from a clone of its repository; or pass --uri / set "
    "MONGODB_URI to use a MongoDB replica set"
)
_LOCK_NAME = "billing.lock"


def default_data_dir() -> pathlib.Path:
    """$BILLING_DATA_DIR, else $XDG_DATA_HOME/billing/secantus, else ~/.local/share/..."""
    explicit = os.environ.get("BILLING_DATA_DIR")
    if explicit:
        return pathlib.Path(explicit).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME", "")
    # The XDG spec says to ignore a relative XDG_DATA_HOME.
    base = pathlib.Path(xdg) if os.path.isabs(xdg) else pathlib.Path.home() / ".local" / "share"
    return base / "billing" / "secantus"


class EmbeddedDatabase:
    """Starts SecantusDB on a free loopback port on enter, stops it on exit.

    Raises `ConfigurationError` on enter when SecantusDB is not installed, the
    data directory cannot be created, or another process is using it.
    """

    def __init__(
        self,
        data_dir: pathlib.Path | None = None,
        *,
        transaction_lifetime_seconds: float = 60.0,
    ) -> None:
        self.data_dir = data_dir if data_dir is not None else default_data_dir()
        self._transaction_lifetime_seconds = transaction_lifetime_seconds
        self._server: Any = None
        self._lock_fd: int | None = None

    @property
    def uri(self) -> str:
        """The connection string; valid between enter and exit."""
        if self._server is None:
            raise RuntimeError("EmbeddedDatabase is not started: use it as a context manager")
        uri: str = self._server.uri
        return uri + "?replicaSet=secantus"

    def start(self) -> EmbeddedDatabase:
        """Start the server (as `with` does); call `stop()` when done."""
        return self.__enter__()

    def stop(self) -> None:
        """Stop the server and release the data directory."""
        self.__exit__(None, None, None)

    def __enter__(self) -> EmbeddedDatabase:
        try:
            from secantus import SecantusDBServer
        except ImportError as exc:
            raise ConfigurationError(_MISSING_EXTRA) from exc
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot create the data directory {self.data_dir} ({exc.strerror}): "
                "set BILLING_DATA_DIR to a writable directory"
            ) from exc
        self._lock_fd = _lock_data_dir(self.data_dir)
        try:
            self._server = SecantusDBServer(
                host="127.0.0.1",
                port=0,
                storage_path=str(self.data_dir),
                # durable=True keeps the journal even if SECANTUS_TEST_FAST_STORAGE=1
                # is set. sync_on_commit: without it the last few acknowledged
                # commits were lost to SIGKILL (measured 43 of 2,400); with it, none.
                durable=True,
                sync_on_commit=True,
                transaction_lifetime_seconds=self._transaction_lifetime_seconds,
                # Failpoints are for test suites, not a database holding invoices.
                enable_test_commands=False,
            )
            self._server.start()
        except BaseException as exc:
            self.__exit__(None, None, None)
            # Held by a process that is not billing (say, secantusd-py on this
            # directory), so our lock did not see it; WiredTiger's did.
            if "resource busy" in str(exc):
                raise ConfigurationError(_busy_message(self.data_dir, None)) from exc
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        server, self._server = self._server, None
        try:
            if server is not None:
                server.stop()  # checkpoints, so the next start replays no journal
        finally:
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # releases the lock
                self._lock_fd = None


def _lock_data_dir(data_dir: pathlib.Path) -> int:
    """Takes an exclusive lock on DIR/billing.lock, or raises ConfigurationError.

    flock, not fcntl locks: it also conflicts within one process, and the kernel
    drops it when the holder dies, so a killed process leaves no stale lock.
    """
    fd = os.open(data_dir / _LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or None
        os.close(fd)
        raise ConfigurationError(_busy_message(data_dir, holder)) from None
    except BaseException:
        os.close(fd)
        raise
    # The holder's pid, only so the message above can name it.
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _busy_message(data_dir: pathlib.Path, holder_pid: str | None) -> str:
    who = f"another billing process (pid {holder_pid})" if holder_pid else "another process"
    return (
        f"{who} is using {data_dir}: stop it first, or give this one its own "
        "directory with BILLING_DATA_DIR"
    )
