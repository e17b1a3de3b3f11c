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

from tests.support import figures
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


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The reliability suite's figures (tests/support/figures.py), after the test results."""
    if figures.lines():
        terminalreporter.section("reliability figures")
        for line in figures.lines():
            terminalreporter.write_line(line)


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


# --- Stripe: a session-wide localstripe, emptied before each test ---------------------------
#
#     localstripe_url       base URL of the session's localstripe subprocess (127.0.0.1 only)
#     stripe_url            the same, emptied before the test (store, webhooks, pending events)
#     stripe_client         stripe.StripeClient on it (sync calls), its HTTP session closed after
#     async_stripe_client   stripe.StripeClient on it for the *_async calls, closed after
#     stripe_gateway        billing StripeGateway on stripe_client
#     async_stripe_gateway  billing AsyncStripeGateway on async_stripe_client
#
# Gateways built on localstripe pass off_session=False: it refuses confirm(off_session=...).

import aiohttp  # noqa: E402
import requests  # noqa: E402
import stripe  # noqa: E402

from billing._async.stripe_gateway import AsyncStripeGateway  # noqa: E402
from billing._sync.stripe_gateway import StripeGateway  # noqa: E402
from tests.support.stripe import TEST_KEY, flush, localstripe_server  # noqa: E402

STRIPE_TIMEOUT_S = 20


@pytest.fixture(scope="session")
def localstripe_url() -> Iterator[str]:
    with localstripe_server() as url:
        yield url


@pytest.fixture
def stripe_url(localstripe_url: str, request: pytest.FixtureRequest) -> str:
    if request.node.get_closest_marker("integration") is None:
        pytest.fail("only tests marked @pytest.mark.integration may use localstripe",
                    pytrace=False)
    flush(localstripe_url)
    return localstripe_url


@pytest.fixture
def stripe_client(stripe_url: str) -> Iterator[stripe.StripeClient]:
    session = requests.Session()
    http_client = stripe.RequestsClient(session=session, timeout=STRIPE_TIMEOUT_S)
    try:
        yield stripe.StripeClient(TEST_KEY, base_addresses={"api": stripe_url},
                                  http_client=http_client)
    finally:
        session.close()


@pytest.fixture
async def async_stripe_client(stripe_url: str) -> AsyncIterator[stripe.StripeClient]:
    # Passed explicitly so it can be closed: the default client's aiohttp session never is.
    http_client = stripe.AIOHTTPClient(timeout=aiohttp.ClientTimeout(total=STRIPE_TIMEOUT_S))
    try:
        yield stripe.StripeClient(TEST_KEY, base_addresses={"api": stripe_url},
                                  http_client=http_client)
    finally:
        await http_client.close_async()


@pytest.fixture
def stripe_gateway(stripe_client: stripe.StripeClient) -> StripeGateway:
    return StripeGateway(stripe_client, off_session=False)


@pytest.fixture
def async_stripe_gateway(async_stripe_client: stripe.StripeClient) -> AsyncStripeGateway:
    return AsyncStripeGateway(async_stripe_client, off_session=False)
