"""Fixtures for every suite. Integration tests (marked `integration`) run once per backend.

    mongo_uri     each test runs on `secantus` (in-process SecantusDB) and on `real`
                  (MONGODB_URI, else a Docker `mongo:8` replica set, else skipped)
    client        pymongo.MongoClient for mongo_uri, closed after the test
    async_client  pymongo.AsyncMongoClient for mongo_uri, closed after the test
    db_name       a fresh database name, dropped after the test

Tests marked `realmongo` are deselected on the `secantus` backend.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import hypothesis
import pytest
from pymongo import AsyncMongoClient, MongoClient

from tests.support.mongo import (
    NO_REAL_MONGO,
    Document,
    docker_available,
    mongo_replica_set_container,
    replica_set_problem,
    secantus_server,
)

# Every operation in a test is bounded, so a blocked write fails the test
# instead of hanging CI; well over SecantusDB's 5 s transaction lifetime here.
CLIENT_TIMEOUT_MS = 20_000

# Two noisy shared cores: a per-example deadline would only add flakiness.
hypothesis.settings.register_profile("billing", deadline=None)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "billing"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselects `realmongo` tests on SecantusDB: they test what only a real server does."""
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("mongo_uri") if callspec else None
        if backend == "secantus" and item.get_closest_marker("realmongo"):
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session")
def secantus_mongo_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with secantus_server(tmp_path_factory.mktemp("secantus")) as uri:
        yield uri


@pytest.fixture(scope="session")
def real_mongo_uri() -> Iterator[str]:
    if uri := os.environ.get("MONGODB_URI"):
        # Asked for explicitly, so a bad one fails rather than skips.
        if problem := replica_set_problem(uri):
            pytest.fail(problem, pytrace=False)
        yield uri
        return
    if not docker_available():
        pytest.skip(NO_REAL_MONGO)
    with mongo_replica_set_container() as uri:
        yield uri


@pytest.fixture(params=["secantus", "real"])
def mongo_uri(request: pytest.FixtureRequest) -> str:
    if request.node.get_closest_marker("integration") is None:
        pytest.fail("only tests marked @pytest.mark.integration may use a database", pytrace=False)
    uri: str = request.getfixturevalue(f"{request.param}_mongo_uri")
    return uri


@pytest.fixture
def client(mongo_uri: str) -> Iterator[MongoClient[Document]]:
    client: MongoClient[Document] = MongoClient(mongo_uri, timeoutMS=CLIENT_TIMEOUT_MS)
    with client:
        yield client


@pytest.fixture
async def async_client(mongo_uri: str) -> AsyncIterator[AsyncMongoClient[Document]]:
    client: AsyncMongoClient[Document] = AsyncMongoClient(mongo_uri, timeoutMS=CLIENT_TIMEOUT_MS)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def db_name(mongo_uri: str) -> Iterator[str]:
    name = f"test_{uuid.uuid4().hex[:16]}"
    yield name
    client: MongoClient[Document] = MongoClient(mongo_uri, timeoutMS=CLIENT_TIMEOUT_MS)
    with client:
        client.drop_database(name)
