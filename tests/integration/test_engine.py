"""The engine under the tests keeps the transaction contract billing relies on:
committed writes are visible together, aborted ones leave no trace."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo import AsyncMongoClient, MongoClient
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.client_session import ClientSession

pytestmark = pytest.mark.integration

Document = dict[str, Any]


class Boom(Exception):
    pass


def test_transaction_commits_and_rolls_back(client: MongoClient[Document], db_name: str) -> None:
    accounts = client[db_name].accounts
    accounts.insert_many([{"_id": "a", "balance": 100}, {"_id": "b", "balance": 0}])

    def transfer(session: ClientSession) -> None:
        accounts.update_one({"_id": "a"}, {"$inc": {"balance": -30}}, session=session)
        accounts.update_one({"_id": "b"}, {"$inc": {"balance": 30}}, session=session)

    def transfer_then_fail(session: ClientSession) -> None:
        transfer(session)
        accounts.insert_one({"_id": "c", "balance": 1}, session=session)
        raise Boom

    with client.start_session() as session:
        session.with_transaction(transfer)
        with pytest.raises(Boom):
            session.with_transaction(transfer_then_fail)
        with session.start_transaction():
            accounts.delete_many({}, session=session)
            session.abort_transaction()

    assert list(accounts.find(sort=[("_id", 1)])) == [
        {"_id": "a", "balance": 70},
        {"_id": "b", "balance": 30},
    ]


async def test_async_transaction_commits_and_rolls_back(
    async_client: AsyncMongoClient[Document], db_name: str
) -> None:
    accounts = async_client[db_name].accounts
    await accounts.insert_many([{"_id": "a", "balance": 100}, {"_id": "b", "balance": 0}])

    async def transfer(session: AsyncClientSession) -> None:
        await accounts.update_one({"_id": "a"}, {"$inc": {"balance": -30}}, session=session)
        await accounts.update_one({"_id": "b"}, {"$inc": {"balance": 30}}, session=session)

    async def transfer_then_fail(session: AsyncClientSession) -> None:
        await transfer(session)
        await accounts.insert_one({"_id": "c", "balance": 1}, session=session)
        raise Boom

    async with async_client.start_session() as session:
        await session.with_transaction(transfer)
        with pytest.raises(Boom):
            await session.with_transaction(transfer_then_fail)
        async with await session.start_transaction():
            await accounts.delete_many({}, session=session)
            await session.abort_transaction()

    assert await accounts.find(sort=[("_id", 1)]).to_list() == [
        {"_id": "a", "balance": 70},
        {"_id": "b", "balance": 30},
    ]
