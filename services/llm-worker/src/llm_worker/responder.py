"""Everything around one reply: fencing, the session's queue, cancel marks, the budget, the
context, then `generate_reply`, then the context and the budget again.

`Responder.respond` returns whether the delivery should be acked: False only when a newer
attempt has the reply (the stale worker leaves the message to it).
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

from openai import AsyncOpenAI
from redis.exceptions import RedisError

from llm_worker.cancels import CancelRegistry, StopSignal
from llm_worker.context import ContextStore, Turn, before, fit_prompt
from llm_worker.coordination import Coordinator
from llm_worker.metrics import WorkerMetrics
from llm_worker.prompts import SystemPrompts
from llm_worker.publisher import ReplyPublisher
from llm_worker.replies import ReplyJob, generate_reply
from llm_worker.settings import WorkerSettings
from llm_worker.tokens import TokenCounter
from shared.events import ReplyEnd, ReplyError, Usage, UserMessage
from shared.logs import context

log = logging.getLogger(__name__)
QUEUE_POLL_S = 0.1
T = TypeVar("T")
BOOKKEEPING_RETRY_S = 120.0
METER_EVERY_TOKENS = 32
"""Streamed tokens are added to the user's spending in batches of this many."""
RETRY_DELAY_MAX_S = 30.0
"""The longest a failed attempt waits before its message is delivered again."""


@dataclass(frozen=True)
class Delivery:
    message: UserMessage
    attempt: int
    seq: int
    """Stream sequence of the user message."""

    @property
    def place(self) -> int:
        """Its place in the session's line: the one the gateway gave it, else (stored by
        another client of the stream) its stream sequence; 0 in a `parallel` session."""
        if self.message.policy == "parallel":
            return 0
        return self.message.place or self.seq


class Responder:
    def __init__(
        self,
        settings: WorkerSettings,
        client: AsyncOpenAI,
        publisher: Callable[[], ReplyPublisher],
        coordinator: Coordinator,
        context: ContextStore,
        prompts: SystemPrompts,
        cancels: CancelRegistry,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self._settings = settings
        self._client = client
        self._publisher = publisher
        self._coord = coordinator
        self._context = context
        self._prompts = prompts
        self.cancels = cancels
        self._counter = TokenCounter(settings.llm_model)
        self.metrics = metrics or WorkerMetrics()
        self.metrics.active.set_function(lambda: len(self.cancels))
        self._background: set[asyncio.Task[None]] = set()
        self._heads: set[tuple[str, str, int]] = set()
        """Queued messages whose reply this worker is answering (they beat)."""

    async def note(self, message: UserMessage) -> None:
        """A message that wants no reply: it only joins the context."""
        await self._context.append(message.session_id, _user_turn(message))

    async def respond(self, delivery: Delivery) -> bool:
        message, attempt, place = delivery.message, delivery.attempt, delivery.place
        sid, mid = message.session_id, message.message_id
        began = await patiently(lambda: self._coord.begin(sid, mid, attempt, place=place))
        if began.claim == "answered":
            return True  # a late delivery of a message already answered
        if began.claim == "newer":
            log.info(
                "the reply belongs to a newer attempt than %d",
                attempt,
                extra=context(sid, mid, attempt),
            )
            return False
        stop = self.cancels.hold(sid, mid, attempt)
        if attempt > 1:
            self.metrics.redeliveries.inc()
        outcome: Literal["failed", "answered", "superseded"] = "failed"
        try:
            if began.cancel_marked:
                stop.set("cancelled")
            if place and began.head != place:
                await self._wait_turn(delivery, stop)
            if place:
                self._heads.add((sid, mid, attempt))
            terminal: ReplyEnd | ReplyError
            if stop.reason == "cancelled":
                terminal = self._cancelled_before_start(delivery)
                await self._publisher().end(terminal)
            else:
                answer = await self._answer(delivery, stop)
                if answer is None:
                    outcome = "superseded"  # fenced off: the newer attempt owns the reply
                    return False
                terminal = answer
            # The terminal event is stored: from here on the message is acked whatever Redis
            # says (a redelivery would stream the reply again); bookkeeping Redis missed is
            # retried in the background.
            if not await self._eventually(
                lambda: self._coord.finish(sid, mid, attempt, place=place, answered=True),
                otherwise=True,
            ):
                log.info(
                    "attempt %d ended after a newer attempt took the reply",
                    attempt,
                    extra=context(sid, mid, attempt),
                )
                outcome = "superseded"
                return False
            outcome = "answered"
            self._count(terminal, stop)
            if isinstance(terminal, ReplyEnd):
                await self._context.append(
                    sid, _user_turn(message), Turn(f"{mid}/reply", "assistant", terminal.text)
                )
            return True
        finally:
            self.cancels.release(sid, mid, attempt)
            self._heads.discard((sid, mid, attempt))
            # A failed attempt keeps its place in line: the message comes back, and the
            # session's later messages wait for its reply as they would have. A superseded
            # one leaves the place, the reply in flight and the turn to the newer attempt.
            if outcome == "failed":
                await self._eventually(
                    lambda: self._coord.finish(sid, mid, attempt, place=place, answered=False),
                    None,
                )

    async def superseded(self, delivery: Delivery) -> bool:
        """Whether a newer attempt (or the end of the reply) took over `delivery`'s message:
        a failed attempt then hands nothing back, or it would cut the newer one short. False
        when Redis cannot tell."""
        sid, mid = delivery.message.session_id, delivery.message.message_id
        try:
            return not await self._coord.holds(sid, mid, delivery.attempt)
        except RedisError:
            return False

    async def _eventually(self, step: Callable[[], Awaitable[T]], otherwise: T) -> T:
        """`step`'s result; if Redis fails it, `otherwise`, and `step` is retried in the
        background every second for up to `BOOKKEEPING_RETRY_S` (a reply's end must not wait
        on Redis)."""
        try:
            return await step()
        except RedisError as exc:
            log.warning("reply bookkeeping postponed: %s", exc)
            self._retry_later(step)
            return otherwise

    def _retry_later(self, step: Callable[[], Awaitable[object]]) -> None:
        async def retry() -> None:
            deadline = time.monotonic() + BOOKKEEPING_RETRY_S
            while time.monotonic() < deadline:
                await asyncio.sleep(1.0)
                try:
                    await step()
                    return
                except RedisError:
                    continue
            log.error("reply bookkeeping lost after %.0f s without Redis", BOOKKEEPING_RETRY_S)

        task = asyncio.create_task(retry())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _count(self, terminal: ReplyEnd | ReplyError, stop: StopSignal) -> None:
        self.metrics.ended(terminal)
        if isinstance(terminal, ReplyEnd) and terminal.finish_reason == "cancelled":
            self.metrics.cancels.inc()
            if stop.at is not None:
                self.metrics.cancel_latency.observe(time.monotonic() - stop.at)

    async def watch(self, delivery: Delivery) -> None:
        """Called on every in-progress beat: stop the reply if a newer attempt fenced it off;
        tell the session's waiting messages that its head of line is being answered."""
        sid, mid, attempt = (
            delivery.message.session_id,
            delivery.message.message_id,
            delivery.attempt,
        )
        head = (sid, mid, attempt) in self._heads
        beat_s = self._settings.worker_ack_wait_s if head else 0
        try:
            claim = await self._coord.watch(sid, mid, attempt, beat_s=beat_s)
        except RedisError:
            return
        if claim != "ours":
            self.cancels.fence(sid, mid, attempt)

    async def _wait_turn(self, delivery: Delivery, stop: StopSignal) -> None:
        """Until every earlier message of the session has its reply (or a cancel comes).

        A head of line nobody answers (no beat) for longer than an ack wait per delivery and
        the longest retry delay was given up on by the stream (or lost before it was
        stored): it is skipped. A reply that streams, however long, is waited for.
        """
        sid, mid, place = delivery.message.session_id, delivery.message.message_id, delivery.place
        settings = self._settings
        stall_s = settings.worker_ack_wait_s * (settings.worker_max_deliver + 1)
        stall_s += RETRY_DELAY_MAX_S
        waiting_on, since = 0, time.monotonic()
        while True:
            line = await patiently(lambda: self._coord.line(sid, place, mid))
            if line.head == place or stop.reason is not None:
                return
            if line.head != waiting_on or line.beating:
                waiting_on, since = line.head, time.monotonic()
            elif time.monotonic() - since > stall_s:
                log.warning(
                    "skipping place %d in line: its message was never answered",
                    line.head,
                    extra=context(sid, mid),
                )
                await self._coord.skip(sid, line.head)
            await asyncio.sleep(QUEUE_POLL_S)

    async def _answer(self, delivery: Delivery, stop: StopSignal) -> ReplyEnd | ReplyError | None:
        message, settings = delivery.message, self._settings
        user = message.participant
        budget = settings.daily_token_budget
        if budget and await self._coord.spent_today(user) >= budget:
            error = self._error(
                delivery, "budget_exceeded", "the daily token budget is spent", retryable=False
            )
            await self._publisher().end(error)
            return error
        turns = before(await self._context.turns(message.session_id), message.message_id)
        prompt = fit_prompt(
            await self._prompts.of(message.session_id),
            turns,
            _user_turn(message),
            self._counter,
            settings.max_context_tokens,
        )
        if self._counter.count_messages(prompt) > settings.max_context_tokens:
            error = self._error(
                delivery,
                "context_too_long",
                "the message is longer than the model's context allows",
                retryable=False,
            )
            await self._publisher().end(error)
            return error
        metered = 0
        pending = 0

        async def meter(tokens: int) -> bool:
            nonlocal metered, pending
            pending += tokens
            if pending < METER_EVERY_TOKENS:
                return True
            total = await self._coord.spend(user, pending)
            metered, pending = metered + pending, 0
            return total < budget

        job = ReplyJob(
            message=message,
            attempt=delivery.attempt,
            prompt=prompt,
            model=settings.llm_model,
            max_tokens=settings.llm_max_tokens,
        )
        terminal = await generate_reply(
            job,
            client=self._client,
            publisher=self._publisher(),
            counter=self._counter,
            stop=stop,
            prices=settings.prices,
            meter=meter if budget else None,
            on_delta=self._delta,
            coalesce_s=settings.worker_coalesce_ms / 1000,
            still_ours=lambda: patiently(
                lambda: self._coord.holds(message.session_id, message.message_id, delivery.attempt)
            ),
        )
        if budget and isinstance(terminal, ReplyEnd):
            await self._coord.spend(user, max(terminal.usage.total_tokens - metered, 0))
        return terminal

    def _delta(self, gap_s: float | None) -> None:
        self.metrics.tokens.inc()
        if gap_s is not None:
            self.metrics.gap.observe(gap_s)

    def _cancelled_before_start(self, delivery: Delivery) -> ReplyEnd:
        message = delivery.message
        return ReplyEnd(
            session_id=message.session_id,
            message_id=message.message_id,
            attempt=delivery.attempt,
            model=self._settings.llm_model,
            text="",
            finish_reason="cancelled",
            usage=Usage(estimated=True),
            duration_ms=0,
            requested_by=message.participant,
        )

    def _error(self, delivery: Delivery, code: str, text: str, *, retryable: bool) -> ReplyError:
        message = delivery.message
        return ReplyError(
            session_id=message.session_id,
            message_id=message.message_id,
            attempt=delivery.attempt,
            code=code,
            message=text,
            retryable=retryable,
        )


async def patiently(step: Callable[[], Awaitable[T]]) -> T:
    """`step`, retried while Redis is unreachable (every second at most; logged once).

    The message is held meanwhile (its in-progress beats go on), so an outage of Redis costs
    no delivery of it: retrying through redeliveries would use them all up in seconds.
    """
    delay, warned = 0.1, False
    while True:
        try:
            return await step()
        except RedisError as exc:
            if not warned:
                log.warning("Redis unavailable (%s); waiting for it", exc)
                warned = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)


def _user_turn(message: UserMessage) -> Turn:
    return Turn(message.message_id, "user", message.content)
