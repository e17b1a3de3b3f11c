"""The MongoDB servers integration tests run against.

SecantusDB always runs in-process. A real replica set comes from MONGODB_URI,
or from a throwaway `mongo:8` container when a Docker engine answers.
"""

from __future__ import annotations

import contextlib
import gc
import re
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pymongo import MongoClient
from pymongo.errors import PyMongoError

NO_REAL_MONGO = "no real MongoDB replica set: set MONGODB_URI or run where Docker is available"
MONGO_IMAGE = "mongo:8"

Document = dict[str, Any]


@contextlib.contextmanager
def secantus_server(
    storage_path: Path, *, transaction_lifetime_seconds: float = 5
) -> Iterator[str]:
    """Yields the URI of an in-process SecantusDB; stops it on exit.

    A short transaction lifetime, because a write blocked by an abandoned
    transaction waits for that long.
    """
    from secantus import SecantusDBServer

    server = SecantusDBServer(
        port=0,
        storage_path=str(storage_path),
        transaction_lifetime_seconds=transaction_lifetime_seconds,
    )
    server.start()
    try:
        yield server.uri + "?replicaSet=secantus"
    finally:
        server.stop()


def replica_set_problem(uri: str, *, timeout_ms: int = 10_000) -> str | None:
    """Why `uri` is not a usable replica set (or mongos), or None when it is.

    Checked once, so a wrong MONGODB_URI fails every test at once instead of
    each one waiting out its own timeout. Never echoes the URI: it may hold a password.
    """
    client: MongoClient[Document] = MongoClient(uri, timeoutMS=timeout_ms)
    try:
        with client:
            hello = client.admin.command("hello")
    except PyMongoError as exc:
        return f"MONGODB_URI did not answer within {timeout_ms} ms: {exc}"
    if "setName" not in hello and hello.get("msg") != "isdbgrid":
        return "MONGODB_URI points to a standalone server: transactions need a replica set"
    return None


def docker_available() -> bool:
    """True when a Docker engine answers a ping within a few seconds."""
    import docker

    # docker-py leaves a socket unclosed when the engine is absent; under
    # `-W error` its ResourceWarning would fail whichever test ran next.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            client = docker.from_env(timeout=3)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except docker.errors.DockerException:
            return False
        finally:
            gc.collect()


@contextlib.contextmanager
def mongo_replica_set_container(image: str = MONGO_IMAGE) -> Iterator[str]:
    """Yields the URI of a fresh single-node replica set in a container; removes it on exit."""
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy

    container = (
        DockerContainer(image)
        .with_command("--replSet rs0 --bind_ip_all")
        .with_exposed_ports(27017)
        .waiting_for(LogMessageWaitStrategy(re.compile("waiting for connections", re.I)))
    )
    with container:
        host = container.get_container_host_ip()
        port = container.get_exposed_port(27017)
        # directConnection: the member is named localhost:27017 inside the
        # container, which the driver could not reach if it followed it.
        uri = f"mongodb://{host}:{port}/?replicaSet=rs0&directConnection=true"
        client: MongoClient[Document] = MongoClient(
            host, port, directConnection=True, timeoutMS=60_000
        )
        with client:
            client.admin.command(
                "replSetInitiate",
                {"_id": "rs0", "members": [{"_id": 0, "host": "localhost:27017"}]},
            )
            _wait_for_primary(client, timeout=60)
        yield uri


def _wait_for_primary(client: MongoClient[Document], *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not client.admin.command("hello").get("isWritablePrimary"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"replica set had no primary after {timeout} s")
        time.sleep(0.2)
