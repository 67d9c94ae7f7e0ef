"""Budgets on a real Redis-compatible server (the reply-queue protocol itself:
tests/shared/test_reply_queue.py): spending adds up for the sender's day and the session, and
a reply's daily budget is an administrator's override, else its token's claim, else the
default."""

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from llm_worker.coordination import Budgets, Coordinator
from shared import keys
from shared.events import UserMessage

pytestmark = pytest.mark.real


@pytest.fixture
async def coordinator(redis_url: str) -> AsyncIterator[Coordinator]:
    redis = Redis.from_url(redis_url)
    yield Coordinator(redis, fence_ttl_s=30)
    await redis.aclose()


def message(claim: int | None = None) -> UserMessage:
    return UserMessage(
        session_id=uuid.uuid4().hex,
        message_id="m1",
        participant=uuid.uuid4().hex,
        content="hi",
        daily_budget=claim,
    )


async def test_budget_spending_adds_up(coordinator: Coordinator) -> None:
    sent = message()
    spent = await coordinator.budgets(sent, default_daily=100, session_cap=0)
    assert (spent.spent_today, spent.spent_in_session) == (0, 0)
    assert await coordinator.spend(sent, 40) == (40, 40)
    assert await coordinator.spend(sent, 2) == (42, 42)
    again = await coordinator.budgets(sent, default_daily=100, session_cap=0)
    assert (again.spent_today, again.spent_in_session) == (42, 42)


async def test_an_override_beats_the_claim_which_beats_the_default(
    coordinator: Coordinator,
) -> None:
    plain, claimed = message(), message(claim=500)
    assert (await coordinator.budgets(plain, default_daily=100, session_cap=7)).daily == 100
    assert (await coordinator.budgets(claimed, default_daily=100, session_cap=7)).daily == 500
    await coordinator.redis.hset(keys.BUDGETS, claimed.participant, 0)  # no limit for them
    try:
        budgets = await coordinator.budgets(claimed, default_daily=100, session_cap=7)
        assert (budgets.daily, budgets.session) == (0, 7)
    finally:
        await coordinator.redis.hdel(keys.BUDGETS, claimed.participant)


def test_which_limit_a_reply_ran_out_of() -> None:
    budgets = Budgets(daily=100, session=50)
    assert budgets.any
    assert budgets.exceeded(99, 49) is None
    assert budgets.exceeded(100, 10) == "budget"
    assert budgets.exceeded(10, 50) == "session_budget"
    assert not Budgets(daily=0, session=0).any
    assert Budgets(daily=0, session=0).exceeded(10**9, 10**9) is None


async def test_without_any_budget_a_reply_reads_only_for_an_override(
    coordinator: Coordinator,
) -> None:
    sent = message()
    reads = Coordinator.spending_reads(sent, default_daily=0, session_cap=0)
    assert reads == [("HGET", keys.BUDGETS, sent.participant)]
    assert not (await coordinator.budgets(sent, default_daily=0, session_cap=0)).any
    await coordinator.spend(sent, 30)
    await coordinator.redis.hset(keys.BUDGETS, sent.participant, 25)  # then one is set
    try:
        budgets = await coordinator.budgets(sent, default_daily=0, session_cap=0)
        assert (budgets.daily, budgets.spent_today) == (25, 30)
        assert budgets.exceeded(budgets.spent_today, budgets.spent_in_session) == "budget"
    finally:
        await coordinator.redis.hdel(keys.BUDGETS, sent.participant)
