"""The org's Stripe customer: claimed here before it is created in Stripe, recorded once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import datetime

from bson import ObjectId

from billing import faults
from billing._async.repositories.orgs import org_doc_in, org_doc_now
from billing._async.service_context import AsyncContext
from billing._async.unit_of_work import AsyncTransaction
from billing.errors import BillingError, PaymentInProgress
from billing.plans import customers as plans
from billing.plans import require_org

CLOCK_SLACK_S = 300  # between our clock and Stripe's, when looking for a customer we created
WAIT_S = 0.05  # between looks at another call's claim


async def ensure_customer(ctx: AsyncContext, org_id: ObjectId) -> str:
    """The org's Stripe customer id, creating the customer if it has none.

    One call at a time creates it: a claim on the org (expiring after `payment_lease_seconds`)
    is taken first, and concurrent callers wait for the id it records. The create carries the
    key `cus-create:{org_id}:{generation}` and the metadata org_id and generation; a call taking
    over a claim of the same generation first looks for a customer that one created, so a lost
    answer or a crash does not make a second customer. PaymentInProgress (retryable) if another
    call holds the claim for longer than `transaction_retry_seconds`.
    """
    org = require_org(await org_doc_now(ctx.uow.direct, org_id), org_id)
    if org.stripe_customer_id:
        return org.stripe_customer_id
    holder = str(ObjectId())
    deadline = time.monotonic() + ctx.uow.retry_seconds
    while True:
        step = await ctx.uow.run(lambda txn: _claim(ctx, txn, org_id, holder))
        if step.customer_id is not None:
            return step.customer_id
        if step.generation is None:  # another call holds the claim
            if time.monotonic() > deadline:
                raise PaymentInProgress(
                    f"another call is creating the Stripe customer of org {org_id} and has not "
                    "finished: retry the call later")
            await asyncio.sleep(WAIT_S)
            continue
        started = ctx.now()
        try:
            created = await _find_or_create(ctx, org_id, org.name, step.generation,
                                            step.look_since)
            faults.hit("customer.after_create")
        except BaseException:
            await _release(ctx, org_id, holder)
            raise
        recorded = await ctx.uow.run(_recorder(ctx, org_id, step.generation, created,
                                               step.look_since))
        if recorded == created:
            return created
        # Not wanted (another customer was recorded meanwhile): ours is new, empty and ours.
        try:
            await ctx.gateway.delete_customer(
                created, idempotency_key=f"cus-delete:{org_id}:{created}")
        except BillingError:
            await _audit(ctx, org_id, started)  # reconciliation deletes it
        if recorded is not None:
            return recorded


async def _find_or_create(ctx: AsyncContext, org_id: ObjectId, name: str, generation: int,
                          look_since: datetime | None) -> str:
    if look_since is not None:
        since = int(look_since.timestamp()) - CLOCK_SLACK_S
        found = sorted((c.created, c.id) for c in await ctx.gateway.find_customers(
            org_id=str(org_id), created_since=since) if c.generation == generation)
        if found:
            return found[0][1]  # the oldest; reconciliation deletes the others if empty
    return await ctx.gateway.create_customer(
        org_id=str(org_id), name=name, generation=generation,
        idempotency_key=f"cus-create:{org_id}:{generation}")


async def _claim(ctx: AsyncContext, txn: AsyncTransaction, org_id: ObjectId,
                 holder: str) -> plans.CustomerStep:
    org = require_org(await org_doc_in(txn, org_id), org_id)
    plan = plans.claim(org, holder=holder, now=ctx.now(), seconds=ctx.payment_lease_seconds)
    await txn.write(plan.writes)
    return plan.result


def _recorder(ctx: AsyncContext, org_id: ObjectId, generation: int, customer_id: str,
              contested_since: datetime | None
              ) -> Callable[[AsyncTransaction], Awaitable[str | None]]:
    async def record(txn: AsyncTransaction) -> str | None:
        org = require_org(await org_doc_in(txn, org_id), org_id)
        plan = plans.record(org, generation=generation, customer_id=customer_id,
                            now=ctx.now(), contested_since=contested_since)
        await txn.write(plan.writes)
        return plan.result

    return record


async def _audit(ctx: AsyncContext, org_id: ObjectId, since: datetime) -> None:
    async def work(txn: AsyncTransaction) -> None:
        org = require_org(await org_doc_in(txn, org_id), org_id)
        await txn.write(plans.audit(org, since=since, until=ctx.now()))

    try:
        await ctx.uow.run(work)
    except BillingError:
        pass  # best effort: the customer stays unknown to reconciliation


async def _release(ctx: AsyncContext, org_id: ObjectId, holder: str) -> None:
    async def work(txn: AsyncTransaction) -> None:
        org = require_org(await org_doc_in(txn, org_id), org_id)
        await txn.write(plans.release(org, holder=holder))

    try:
        await ctx.uow.run(work)
    except BillingError:
        pass  # the claim expires instead
