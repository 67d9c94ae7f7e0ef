"""The reply-queue protocol on a real Redis-compatible server: fencing, a session's line,
cancel marks, and admission."""

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from shared import keys
from shared.reply_queue import ReplyQueue
from shared.reply_states import AdmissionLimits, Admitted, Refused

pytestmark = pytest.mark.real
LIMITS = AdmissionLimits(messages_per_min=60, replies_per_session=3, daily_token_budget=100)


@pytest.fixture
async def queue(redis_url: str) -> AsyncIterator[ReplyQueue]:
    redis = Redis.from_url(redis_url)
    yield ReplyQueue(redis, fence_ttl_s=30)
    await redis.aclose()


async def answered(queue: ReplyQueue, sid: str, mid: str, attempt: int, place: int = 0) -> bool:
    return await queue.finish(sid, mid, attempt, place=place, answered=True)


async def test_a_newer_attempt_fences_off_an_older_one(queue: ReplyQueue) -> None:
    sid, mid = uuid.uuid4().hex, "m1"
    assert await queue.claim(sid, mid, 1) == "ours"
    assert await queue.holds(sid, mid, 1)
    assert await queue.claim(sid, mid, 2) == "ours"
    assert not await queue.holds(sid, mid, 1)
    assert await queue.claim(sid, mid, 1) == "newer"
    assert await queue.holds(sid, mid, 2)


async def test_a_delivery_counted_as_another_s_attempt_claims_the_next_one(
    queue: ReplyQueue,
) -> None:
    # A broker that crashed can lose its delivery counts: a redelivery is counted 1 again.
    sid, mid = uuid.uuid4().hex, "m1"
    first = await queue.begin(sid, mid, 1, delivery="d1")
    assert (first.claim, first.attempt) == ("ours", 1)
    assert await queue.holds(sid, mid, 1)  # watching keeps the delivery that began it
    again = await queue.begin(sid, mid, 1, delivery="d1")  # its own begin, retried
    assert (again.claim, again.attempt) == ("ours", 1)
    recounted = await queue.begin(sid, mid, 1, delivery="d2")
    assert (recounted.claim, recounted.attempt) == ("ours", 2)
    assert not await queue.holds(sid, mid, 1)
    assert await queue.holds(sid, mid, 2)
    assert (await queue.begin(sid, mid, 1, delivery="d3")).claim == "newer"
    assert await answered(queue, sid, mid, 2)
    assert (await queue.begin(sid, mid, 3, delivery="d4")).claim == "answered"


async def test_an_answered_message_is_never_answered_again(queue: ReplyQueue) -> None:
    sid, mid = uuid.uuid4().hex, "m1"
    assert await queue.claim(sid, mid, 1) == "ours"
    assert await answered(queue, sid, mid, 1)
    assert await queue.claim(sid, mid, 2) == "answered"
    assert not await queue.holds(sid, mid, 1)
    assert 0 < await queue.redis.ttl(keys.fence(sid, mid)) <= 30


async def test_a_stale_attempt_that_ends_late_does_not_answer_for_the_newer_one(
    queue: ReplyQueue,
) -> None:
    # Attempt 1 checked its claim, stalled, and stored its terminal event after attempt 2
    # claimed the reply: attempt 2 is streaming it again and must be able to finish.
    sid, mid = uuid.uuid4().hex, "m1"
    assert await queue.claim(sid, mid, 1) == "ours"
    assert await queue.claim(sid, mid, 2) == "ours"
    assert not await answered(queue, sid, mid, 1)
    assert await queue.holds(sid, mid, 2)
    assert await answered(queue, sid, mid, 2)
    assert await queue.claim(sid, mid, 3) == "answered"
    assert await answered(queue, sid, mid, 1)  # answered already: nothing to supersede


async def test_a_session_answers_in_stream_order(queue: ReplyQueue) -> None:
    sid = uuid.uuid4().hex
    assert (await queue.line(sid, 10)).head == 10
    assert (await queue.line(sid, 12)).head == 10
    assert (await queue.line(sid, 11)).head == 10
    await answered(queue, sid, "m10", 1, place=10)
    assert (await queue.line(sid, 11)).head == 11
    assert (await queue.line(sid, 12)).head == 11


async def test_the_worker_answering_the_head_of_line_beats(queue: ReplyQueue) -> None:
    sid = uuid.uuid4().hex
    assert not (await queue.line(sid, 10)).beating
    await queue.beat(sid, 0.2)
    assert (await queue.line(sid, 11)).beating
    await asyncio.sleep(0.3)
    assert not (await queue.line(sid, 11)).beating
    assert await queue.watch(sid, "m10", 1, beat_s=0.2) == "ours"
    assert (await queue.line(sid, 11)).beating


async def test_active_reply_and_cancel_marks(queue: ReplyQueue) -> None:
    sid = uuid.uuid4().hex
    await queue.line(sid, 1, "m1")
    assert await queue.redis.get(keys.active_reply(sid)) == b"m1"
    await queue.line(sid, 2, "m2")
    assert await queue.redis.get(keys.active_reply(sid)) == b"m1"  # m2 is not first in line
    await answered(queue, sid, "m1", 1, place=1)
    assert await queue.redis.get(keys.active_reply(sid)) is None
    assert not (await queue.begin(sid, "m2", 1)).cancel_marked
    await queue.mark_cancelled(sid, "m2")
    assert (await queue.begin(sid, "m2", 1)).cancel_marked


async def test_begin_claims_reads_the_cancel_mark_and_queues_in_one_step(
    queue: ReplyQueue,
) -> None:
    redis, sid = queue.redis, f"s-{uuid.uuid4()}"
    first = await queue.begin(sid, "m1", 1, place=10)
    assert (first.claim, first.cancel_marked, first.head) == ("ours", False, 10)
    assert await redis.get(keys.active_reply(sid)) == b"m1"
    await redis.set(keys.cancel_mark(sid, "m2"), 1)
    second = await queue.begin(sid, "m2", 1, place=11)
    assert (second.claim, second.cancel_marked, second.head) == ("ours", True, 10)
    assert await redis.get(keys.active_reply(sid)) == b"m1"  # m2 waits its turn
    assert (await queue.begin(sid, "m1", 1, place=10)).claim == "ours"
    assert await answered(queue, sid, "m1", 1, place=10)
    late = await queue.begin(sid, "m1", 2, place=10)
    assert late.claim == "answered"
    assert (await queue.begin(sid, "m2", 0)).claim == "newer"


async def test_begin_without_a_queue_leaves_the_line_alone(queue: ReplyQueue) -> None:
    sid = f"s-{uuid.uuid4()}"
    began = await queue.begin(sid, "m1", 1)
    assert (began.claim, began.head) == ("ours", 0)
    assert await queue.redis.zcard(keys.session_queue(sid)) == 0


async def test_a_failed_attempt_keeps_its_place_and_leaves_the_replies_in_flight(
    queue: ReplyQueue,
) -> None:
    sid = uuid.uuid4().hex
    assert isinstance(await admit(queue, sid, "m1"), Admitted)
    await queue.begin(sid, "m1", 1, place=7)
    assert await queue.finish(sid, "m1", 1, place=7, answered=False)
    assert await queue.redis.zcard(keys.session_queue(sid)) == 1
    assert await queue.redis.zcard(keys.inflight(sid)) == 0
    assert await queue.claim(sid, "m1", 2) == "ours"


async def admit(
    queue: ReplyQueue,
    sid: str,
    mid: str,
    *,
    user: str = "u",
    policy: str = "queue",
    reply: bool = True,
    limits: AdmissionLimits = LIMITS,
) -> Admitted | Refused:
    assert policy in ("queue", "interrupt", "reject", "parallel")
    return await queue.admit(
        limits,
        user_id=user,
        session_id=sid,
        message_id=mid,
        reply=reply,
        policy=policy,  # type: ignore[arg-type]
    )


async def test_an_admitted_message_takes_a_slot_and_joins_the_line_once_taken(
    queue: ReplyQueue,
) -> None:
    sid, user = uuid.uuid4().hex, uuid.uuid4().hex
    assert await admit(queue, sid, "m1", user=user) == Admitted(None)
    assert await admit(queue, sid, "m2", user=user) == Admitted(None)
    assert await queue.redis.zrange(keys.inflight(sid), 0, -1) == [b"m1", b"m2"]
    assert await queue.redis.zcard(keys.session_queue(sid)) == 0  # nothing before it is stored
    await queue.line(sid, 12)
    await queue.line(sid, 11)
    await queue.line(sid, 12)  # idempotent
    assert (await queue.line(sid, 12)).head == 11


async def test_a_message_without_a_reply_takes_no_slot(queue: ReplyQueue) -> None:
    sid, user = uuid.uuid4().hex, uuid.uuid4().hex
    assert await admit(queue, sid, "m1", user=user, policy="parallel") == Admitted(None)
    assert await admit(queue, sid, "m2", user=user, reply=False) == Admitted(None)
    assert await queue.redis.zrange(keys.inflight(sid), 0, -1) == [b"m1"]


async def test_a_reject_session_refuses_while_a_reply_waits_or_streams(queue: ReplyQueue) -> None:
    sid, user = uuid.uuid4().hex, uuid.uuid4().hex
    assert isinstance(await admit(queue, sid, "m1", user=user, policy="reject"), Admitted)
    # admitted: it waits for a worker, then for its reply
    assert await admit(queue, sid, "m2", user=user, policy="reject") == Refused("busy", 1.0)
    assert await queue.redis.zrange(keys.inflight(sid), 0, -1) == [b"m1"]  # nothing taken
    assert await answered(queue, sid, "m1", 1, place=5)
    assert isinstance(await admit(queue, sid, "m2", user=user, policy="reject"), Admitted)


async def test_an_interrupt_session_marks_the_running_reply_cancelled(queue: ReplyQueue) -> None:
    sid, user = uuid.uuid4().hex, uuid.uuid4().hex
    assert await admit(queue, sid, "m1", user=user, policy="interrupt") == Admitted(None)
    await queue.begin(sid, "m1", 1, place=1)  # m1 streams
    assert await admit(queue, sid, "m2", user=user, policy="interrupt") == Admitted("m1")
    assert await queue.redis.exists(keys.cancel_mark(sid, "m1"))
    assert not await queue.redis.exists(keys.cancel_mark(sid, "m2"))


async def test_a_message_taken_first_waits_for_one_admitted_before_it(queue: ReplyQueue) -> None:
    sid, user = uuid.uuid4().hex, uuid.uuid4().hex
    assert await admit(queue, sid, "m1", user=user) == Admitted(None)
    assert await admit(queue, sid, "m2", user=user) == Admitted(None)
    assert await queue.redis.zrange(keys.storing(sid), 0, -1) == [b"m1", b"m2"]
    second = await queue.begin(sid, "m2", 1, place=8)  # its worker began first
    assert (second.head, second.blocker) == (8, "m1")
    assert second.admitted_at > 0
    assert not await queue.redis.exists(keys.active_reply(sid))  # not its turn yet
    assert (await queue.line(sid, 8, "m2", second.admitted_at)).blocker == "m1"
    first = await queue.begin(sid, "m1", 1, place=7)
    assert (first.head, first.blocker) == (7, "")
    assert await queue.redis.get(keys.active_reply(sid)) == b"m1"
    after = await queue.line(sid, 8, "m2", second.admitted_at)
    assert (after.head, after.blocker) == (7, "")
    assert await queue.redis.zcard(keys.storing(sid)) == 0


async def test_a_blocker_nobody_takes_is_forgotten(queue: ReplyQueue) -> None:
    sid, user = uuid.uuid4().hex, uuid.uuid4().hex
    assert await admit(queue, sid, "lost", user=user) == Admitted(None)
    assert await admit(queue, sid, "m2", user=user) == Admitted(None)
    began = await queue.begin(sid, "m2", 1, place=3)
    assert began.blocker == "lost"
    await queue.forget(sid, "lost")
    line = await queue.line(sid, 3, "m2", began.admitted_at)
    assert (line.head, line.blocker) == (3, "")
    assert await queue.redis.get(keys.active_reply(sid)) == b"m2"


async def test_a_message_the_stream_did_not_store_is_withdrawn(queue: ReplyQueue) -> None:
    sid, user = uuid.uuid4().hex, uuid.uuid4().hex
    assert await admit(queue, sid, "m1", user=user, policy="reject") == Admitted(None)
    await queue.withdraw(sid, "m1")
    assert await queue.redis.zcard(keys.inflight(sid)) == 0
    assert await queue.redis.zcard(keys.storing(sid)) == 0
    assert await admit(queue, sid, "m2", user=user, policy="reject") == Admitted(None)


async def test_only_queued_messages_no_worker_took_are_noted_storing(queue: ReplyQueue) -> None:
    sid, user = uuid.uuid4().hex, uuid.uuid4().hex
    assert await admit(queue, sid, "p", user=user, policy="parallel") == Admitted(None)
    assert await admit(queue, sid, "n", user=user, reply=False) == Admitted(None)
    assert await queue.redis.zcard(keys.storing(sid)) == 0
    assert await admit(queue, sid, "m1", user=user) == Admitted(None)
    await queue.begin(sid, "m1", 1, place=4)
    assert await admit(queue, sid, "m1", user=user) == Admitted(None)  # a resend, taken already
    assert await queue.redis.zcard(keys.storing(sid)) == 0
    assert await admit(queue, sid, "m2", user=user) == Admitted(None)
    assert await answered(queue, sid, "m2", 1, place=5)  # however it ended, it is taken
    assert await queue.redis.zcard(keys.storing(sid)) == 0


async def test_only_the_sender_or_a_privileged_user_marks_a_reply_cancelled(
    queue: ReplyQueue,
) -> None:
    sid, alice, bob = uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex
    assert await admit(queue, sid, "m1", user=alice) == Admitted(None)
    assert await admit(queue, sid, "m1", user=bob) == Admitted(None)  # a resend: still alice's
    mark = keys.cancel_mark(sid, "m1")
    assert await queue.cancel(sid, "m1", user_id=bob, any_reply=False) == "not_theirs"
    assert not await queue.redis.exists(mark)
    assert await queue.cancel(sid, "m1", user_id=alice, any_reply=False) == "cancelled"
    assert await queue.redis.exists(mark)
    await queue.redis.delete(mark)
    assert await queue.cancel(sid, "m1", user_id=bob, any_reply=True) == "cancelled"
    assert await queue.redis.exists(mark)
    assert 0 < await queue.redis.ttl(keys.sender(sid, "m1")) <= keys.SENDER_TTL_S


async def test_a_message_with_no_reply_asked_has_no_sender_to_cancel(queue: ReplyQueue) -> None:
    sid, alice = uuid.uuid4().hex, uuid.uuid4().hex
    assert await admit(queue, sid, "quiet", user=alice, reply=False) == Admitted(None)
    assert await queue.cancel(sid, "quiet", user_id=alice, any_reply=False) == "unknown"
    assert await queue.cancel(sid, "never-sent", user_id=alice, any_reply=False) == "unknown"
    assert not await queue.redis.exists(keys.cancel_mark(sid, "never-sent"))


async def test_a_message_no_worker_began_is_given_up_and_later_only_acked(
    queue: ReplyQueue,
) -> None:
    sid, user = uuid.uuid4().hex, uuid.uuid4().hex
    assert await admit(queue, sid, "m1", user=user) == Admitted(None)
    assert await admit(queue, sid, "m2", user=user) == Admitted(None)
    assert await queue.redis.zcard(keys.inflight(sid)) == 2
    assert await queue.give_up(sid, "m1")
    assert await queue.redis.zrange(keys.inflight(sid), 0, -1) == [b"m2"]
    assert await queue.redis.zrange(keys.storing(sid), 0, -1) == [b"m2"]  # m2 waits for none
    assert (await queue.begin(sid, "m1", 1, place=3)).claim == "answered"
    assert not await queue.give_up(sid, "m1")  # once: its error is stored once

    began = await queue.begin(sid, "m2", 1, place=4)
    assert began.claim == "ours"
    assert not await queue.give_up(sid, "m2")  # a worker began it: it is left alone
    assert await queue.holds(sid, "m2", 1)
