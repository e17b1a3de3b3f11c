"""The server the benchmark runs on: its own SecantusDB in a process of its own (the default) or
in the benchmark's process, or MONGODB_URI.

`Engine.client(delayed=True)` connects through a DelayProxy; `delayed_address` is None when the
proxy cannot stand in front of the server (several hosts, SRV or TLS in MONGODB_URI).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient, MongoClient, monitoring, uri_parser

Doc = dict[str, Any]
CLIENT_BULK_WRITE_WIRE_VERSION = 25  # MongoDB 8.0


@dataclass
class Engine:
    uri: str
    name: str  # e.g. "SecantusDB 0.7.0b3 (reports MongoDB 8.2.11), in its own process"
    client_bulk_write: bool
    delayed_address: tuple[str, int] | None = None  # where the proxy forwards to
    proxy_port: int | None = None

    def client(self, listener: monitoring.CommandListener | None = None, *,
               delayed: bool = False) -> MongoClient[Doc]:
        host, options = self._target(delayed)
        return MongoClient(host, **options, **_options(listener))

    def async_client(self, listener: monitoring.CommandListener | None = None
                     ) -> AsyncMongoClient[Doc]:
        host, options = self._target(False)
        return AsyncMongoClient(host, **options, **_options(listener))

    def _target(self, delayed: bool) -> tuple[str, dict[str, Any]]:
        if not delayed:
            return self.uri, {}
        if self.proxy_port is None:
            raise RuntimeError("no delay proxy is running")
        # directConnection: otherwise the driver would follow the member's own address, around
        # the proxy. Credentials and options of MONGODB_URI are carried over.
        parsed = uri_parser.parse_uri(self.uri)
        options = {k: v for k, v in parsed["options"].items()
                   if k.lower() not in {"replicaset", "directconnection"}}
        if parsed["username"]:
            options.update(username=parsed["username"], password=parsed["password"])
        return f"mongodb://127.0.0.1:{self.proxy_port}/", {**options, "directConnection": True}


def _options(listener: monitoring.CommandListener | None) -> dict[str, Any]:
    return {"event_listeners": [listener] if listener else [], "serverSelectionTimeoutMS": 10_000}


@contextmanager
def start(*, in_process: bool = False) -> Iterator[Engine]:
    """MONGODB_URI if set, else a fresh SecantusDB in a temporary directory, stopped on exit:
    in a child process (`bench.server`), or with `in_process` in this one."""
    if uri := os.environ.get("MONGODB_URI"):
        yield describe(uri, "via MONGODB_URI")
        return
    with tempfile.TemporaryDirectory(prefix="bench-secantus-") as storage:
        if in_process:
            from secantus import SecantusDBServer

            # A long transaction lifetime: the naive flow at 10,000 conversations is one long
            # transaction; the default (60 s) would abort it on a slow machine.
            server = SecantusDBServer(port=0, storage_path=storage,
                                      transaction_lifetime_seconds=600)
            server.start()
            try:
                yield describe(server.uri + "?replicaSet=secantus",
                               "in the benchmark's process")
            finally:
                server.stop()
            return
        port = _free_port()
        child = subprocess.Popen(
            [sys.executable, "-m", "bench.server", "--port", str(port), "--storage-path", storage],
            stdin=subprocess.DEVNULL, cwd=Path(__file__).resolve().parents[1])
        try:
            uri = f"mongodb://127.0.0.1:{port}/?replicaSet=secantus"
            _wait_until_serving(uri, child)
            yield describe(uri, "in its own process (a client-server layout over loopback)")
        finally:
            child.terminate()  # by its PID: SIGTERM, and it stops its server
            try:
                child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_until_serving(uri: str, child: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while True:
        if child.poll() is not None:
            raise RuntimeError(f"the SecantusDB process exited with status {child.returncode}")
        client: MongoClient[Doc] = MongoClient(uri, serverSelectionTimeoutMS=500)
        try:
            with client:
                client.admin.command("ping")
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def describe(uri: str, where: str) -> Engine:
    client: MongoClient[Doc] = MongoClient(uri, serverSelectionTimeoutMS=10_000)
    with client:
        info = client.admin.command("buildInfo")
        hello = client.admin.command("hello")
    parsed = uri_parser.parse_uri(uri)
    if "secantusVersion" in info:
        name = f"SecantusDB {info['secantusVersion']} (reports MongoDB {info['version']}), {where}"
    else:
        name = f"MongoDB {info['version']}, {where}"
    single = len(parsed["nodelist"]) == 1 and not parsed["options"].get("tls")
    return Engine(
        uri=uri, name=name,
        client_bulk_write=int(hello.get("maxWireVersion", 0)) >= CLIENT_BULK_WRITE_WIRE_VERSION,
        delayed_address=parsed["nodelist"][0] if single and "+srv" not in uri else None,
    )
