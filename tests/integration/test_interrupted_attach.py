"""attach interrupted while its activation's commit is in flight (a caller's timeout, a task
cancelled on shutdown): the commit lands after the compensation read what committed.

What pymongo does when a task is cancelled while awaiting commitTransaction's reply: it closes
the connection and leaves the session's transaction state COMMITTED (client_session.py,
commit_transaction's `finally`), so with_transaction sends no abort. The server received the
commit and applies it whatever happened to the connection. How soon a snapshot read on another
connection sees it is the server's business (majority write concern, replication): the
compensation's read may come first. The test holds the commit until the compensation has
acted, then lets it land, as the server would.
"""
from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pymongo.asynchronous.client_session import _TxnState
from pymongo.errors import OperationFailure

import billing._async.unit_of_work as uow_mod
from billing import PaymentError, PaymentProviderUnavailable, faults
from tests.support.drivers import LEASE, NOW, Clock, Driver
from tests.support.invariants import attached_to, check_methods

pytestmark = pytest.mark.integration


@pytest.fixture
def ad(mongo_uri: str, db_name: str):
    driver = Driver("async", mongo_uri, db_name, clock=Clock(NOW), payment_lease_seconds=LEASE)
    try:
        yield driver
    finally:
        driver.close()


def test_attach_timed_out_during_its_commit_never_detaches_the_card_it_activated(
        ad: Driver, monkeypatch: pytest.MonkeyPatch) -> None:
    org = ad("orgs.create", name="Acme", currency="usd", per_conversation=50,
             per_started_minute=10)
    real_commit = uow_mod._commit
    state: dict[str, Any] = {"armed": False}
    gate = asyncio.Event()

    async def commit(session: Any, deadline: float) -> None:
        if not state["armed"]:
            return await real_commit(session, deadline)
        state["armed"] = False
        # The commit is on the wire; the server applies it when the gate opens.
        end = session._end_session

        async def keep(lock: bool) -> None:  # the server's session lives on until the commit
            pass                               # lands
        session._end_session = keep

        async def land() -> None:
            await gate.wait()
            session._transaction.state = _TxnState.COMMITTED
            try:
                await session.commit_transaction()  # (pymongo moves COMMITTED back to retry it)
            except OperationFailure:  # the server aborted it meanwhile: it never lands
                pass
            await end(lock=True)
        state["landing"] = asyncio.ensure_future(land())
        # The caller's timeout fires while it awaits the reply.
        asyncio.current_task().cancel()
        try:
            await asyncio.sleep(3600)
        finally:
            session._transaction.state = _TxnState.COMMITTED  # as pymongo leaves it

    monkeypatch.setattr(uow_mod, "_commit", commit)

    async def arm() -> None:
        state["armed"] = True  # the next transaction is the activation
    ad.fake.during("attach", arm)

    async def let_it_land() -> None:  # the server applies the commit meanwhile
        gate.set()
        await state["landing"]
    ad.fake.during("detach", let_it_land)

    async def go() -> Any:
        try:
            return await ad.b.payment_methods.attach(org.id, "pm_card_visa", request_id="r1")
        except BaseException as exc:  # noqa
            return exc
    out = ad.loop.run_until_complete(go())
    if not gate.is_set():  # no undo in Stripe was made: land the commit now
        gate.set()
        ad.loop.run_until_complete(state["landing"])
    assert isinstance(out, asyncio.CancelledError), out  # the cancellation propagates

    docs = list(ad.db.payment_methods.find({}))
    org_doc = ad.db.orgs.find_one({})
    stripe_ids = {d["stripe_id"]: ad.fake.methods[d["stripe_id"]].customer_id for d in docs}
    print([(d["status"], d.get("failure")) for d in docs], org_doc.get("default_payment_method_id"),
          stripe_ids)
    # Invariant (README): an org's default is an active method attached in Stripe to the org's
    # current customer. Here the attach committed (active, the default) and its compensation
    # detached the card in Stripe, which never attaches it again.
    for m in docs:
        if m["status"] == "active":
            assert ad.fake.methods[m["stripe_id"]].customer_id == \
                org_doc["stripe_customer_id"], \
                f"active method {m['_id']} (default: {org_doc.get('default_payment_method_id')})" \
                f" whose card {m['stripe_id']} the compensation detached in Stripe"
    check_methods(ad.db, ad.fake)


def test_sync_attach_interrupted_during_its_commit_never_detaches_the_card_it_activated(
        mongo_uri: str, db_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same with the sync Billing and Ctrl-C (KeyboardInterrupt) while the commit's reply is
    awaited: pymongo's sync commit_transaction leaves the state COMMITTED the same way."""
    from pymongo.client_session_shared import _TxnState as SyncTxnState

    import billing._sync.unit_of_work as sync_uow

    d = Driver("sync", mongo_uri, db_name, clock=Clock(NOW), payment_lease_seconds=LEASE)
    try:
        org = d("orgs.create", name="Acme", currency="usd", per_conversation=50,
                per_started_minute=10)
        real_commit = sync_uow._commit
        state: dict[str, Any] = {"armed": False}

        def commit(session: Any, deadline: float) -> None:
            if not state["armed"]:
                return real_commit(session, deadline)
            state["armed"] = False
            end = session._end_session
            session._end_session = lambda lock: None

            def land() -> None:
                session._transaction.state = SyncTxnState.COMMITTED
                try:
                    session.commit_transaction()
                except OperationFailure:  # the server aborted it meanwhile: it never lands
                    pass
                end(lock=True)
            state["land"] = land
            session._transaction.state = SyncTxnState.COMMITTED  # as pymongo leaves it
            raise KeyboardInterrupt

        monkeypatch.setattr(sync_uow, "_commit", commit)
        d.fake.during("attach", lambda: state.update(armed=True))
        d.fake.during("detach", lambda: state.pop("land")())
        with pytest.raises(KeyboardInterrupt):
            d("payment_methods.attach", org.id, "pm_card_visa", request_id="r1")
        if "land" in state:
            state.pop("land")()
        org_doc = d.db.orgs.find_one({})
        for m in d.db.payment_methods.find({"status": "active"}):
            assert d.fake.methods[m["stripe_id"]].customer_id == \
                org_doc["stripe_customer_id"], \
                f"active method {m['_id']} (default: {org_doc.get('default_payment_method_id')})" \
                f" whose card {m['stripe_id']} the compensation detached in Stripe"
        check_methods(d.db, d.fake)
    finally:
        d.close()


def test_an_attach_its_caller_timed_out_is_finished_by_a_repeat(ad: Driver) -> None:
    """The caller's timeout fires while the activation waits its turn for a transaction: the
    card is not undone in Stripe (it could never be attached again); the record stays pending,
    and a repeat of the request finishes it."""
    d = ad
    org = _new_org(d)
    card = d.fake.create_card("4242424242424242")  # the customer's card, from Stripe.js

    _timed_out_in_activation(d, org, card, "r1")

    assert [m["status"] for m in d.db.payment_methods.find()] == ["pending"]
    assert d.fake.methods[card].customer_id is not None  # still attached in Stripe
    again = d("payment_methods.attach", org.id, card, request_id="r1")
    assert again.status.value == "active" and again.stripe_id == card
    check_methods(d.db, d.fake)


def _timed_out_in_activation(d: Driver, org: Any, source: str, request_id: str,
                             **kw: Any) -> None:
    """The caller's timeout fires while the activation waits its turn for a transaction
    (Stripe attached the card); the other transaction then ends."""
    held = asyncio.Event()

    async def busy() -> None:
        async with d.b._uow.admission.slot():
            held.set()
            await asyncio.sleep(2)

    async def other_work() -> None:
        asyncio.ensure_future(busy())
        await held.wait()

    d.fake.during("attach", other_work)

    async def timed_out() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(d.b.payment_methods.attach(
                org.id, source, request_id=request_id, **kw), 1)

    d.loop.run_until_complete(timed_out())
    d.loop.run_until_complete(asyncio.sleep(1.5))


def _new_org(d: Driver) -> Any:
    return d("orgs.create", name="Acme", currency="usd", per_conversation=50,
             per_started_minute=10)


def test_a_repeat_of_a_timed_out_token_attach_attaches_one_card(ad: Driver) -> None:
    """A one-time token becomes a new card on every use (and Stripe replays an idempotency
    key only for a while): the interrupted call recorded the card Stripe attached, so the
    repeat activates that card instead of attaching the token again."""
    d = ad
    org = _new_org(d)
    _timed_out_in_activation(d, org, "pm_card_visa", "r1")
    (pending,) = d.db.payment_methods.find()
    assert pending["status"] == "pending" and pending["stripe_id"]

    again = d("payment_methods.attach", org.id, "pm_card_visa", request_id="r1")

    customer = d.db.orgs.find_one({})["stripe_customer_id"]
    assert again.stripe_id == pending["stripe_id"] and again.status.value == "active"
    assert attached_to(d.fake, customer) == {again.stripe_id}


def test_reconciliation_finishes_a_timed_out_token_attach_as_it_asked(ad: Driver) -> None:
    d = ad
    org = _new_org(d)
    d("payment_methods.attach", org.id, "pm_card_visa", request_id="r0")
    _timed_out_in_activation(d, org, "pm_card_visa", "r1", make_default=True)
    d.clock.advance(3600)

    d("reconciliation.run", apply=True)

    r1 = d.db.payment_methods.find_one({"request_id": "r1"})
    assert r1 is not None and r1["status"] == "active"
    assert d.db.orgs.find_one({})["default_payment_method_id"] == str(r1["_id"])
    customer = d.db.orgs.find_one({})["stripe_customer_id"]
    assert len(attached_to(d.fake, customer)) == 2  # r0's and r1's, nothing adopted twice
    check_methods(d.db, d.fake)


def test_a_repeat_never_activates_a_card_its_undo_detached_in_stripe(ad: Driver) -> None:
    """The activation fails, the undo detaches the card in Stripe but its answer is lost, so
    the record stays pending with the card's id. A repeat, even one Stripe answers with its
    saved reply of the first attach, asks Stripe where the card is: detached for good, so the
    request fails and the card never becomes the org's default."""
    d = ad
    real, saved = d.fake.attach, {}

    async def replaying(*, payment_method: str, customer_id: str, idempotency_key: str) -> Any:
        if idempotency_key not in saved:
            saved[idempotency_key] = await real(payment_method=payment_method,
                                                customer_id=customer_id,
                                                idempotency_key=idempotency_key)
        return saved[idempotency_key]

    d.fake.attach = replaying
    org = _new_org(d)
    card = d.fake.create_card("4242424242424242")
    d.fake.fail_next("detach", PaymentProviderUnavailable("Stripe timed out"), after=True)
    with faults.active({"payment_methods.attach.after_stripe": "raise"}), \
            pytest.raises(faults.InjectedFault):
        d("payment_methods.attach", org.id, card, request_id="r1")
    doc = d.db.payment_methods.find_one({})
    assert doc is not None and doc["status"] == "pending" and doc["stripe_id"] == card
    assert d.fake.methods[card].customer_id is None  # detached in Stripe, for good

    with pytest.raises(PaymentError, match="no longer attached"):
        d("payment_methods.attach", org.id, card, request_id="r1")

    assert d.db.payment_methods.find_one({})["status"] == "failed"
    assert d.db.orgs.find_one({}).get("default_payment_method_id") is None
