"""Carries out one attempt at a reply as `llm_worker.attempt` decides it: claim, wait for the
session's turn, refuse or stream, end — reading and writing Redis through the reply-queue
protocol, and the context, the prompt and the budget around the stream.

`Responder.respond` returns whether the delivery should be acked: False only when a newer
attempt has the reply (the stale worker leaves the message to it).
"""

import logging
import time
from collections.abc import Callable
from typing import Literal

from redis.exceptions import RedisError

from llm_worker import attempt as decide
from llm_worker.asking import Asking
from llm_worker.attempt_watch import AttemptWatch
from llm_worker.cancels import CancelRegistry, StopSignal
from llm_worker.context import ContextStore
from llm_worker.coordination import Coordinator
from llm_worker.delivery import Delivery
from llm_worker.metrics import WorkerMetrics
from llm_worker.model_call import context_update, user_turn
from llm_worker.patience import Bookkeeping, patiently
from llm_worker.prompts import SystemPrompts
from llm_worker.providers import Providers, Served
from llm_worker.publisher import ReplyPublisher
from llm_worker.replies import Streaming, generate_reply
from llm_worker.settings import WorkerSettings
from llm_worker.start_reads import Answers, StartReads
from llm_worker.titling import Titler
from llm_worker.tool_runs import ToolRunner
from llm_worker.turns import Waiter, wait_turn
from llm_worker.upstream import ModelServer
from llm_worker.upstream_limit import UpstreamLimit
from shared.events import ReplyEnd, ReplyError, UserMessage
from shared.reply_states import Beginning

log = logging.getLogger(__name__)
RETRY_DELAY_MAX_S = 30.0
"""The longest a failed attempt waits before its message is delivered again."""
Outcome = Literal["failed", "answered", "superseded"]


class Responder:
    def __init__(
        self,
        settings: WorkerSettings,
        client: ModelServer | Providers,
        publisher: Callable[[], ReplyPublisher],
        coordinator: Coordinator,
        context: ContextStore,
        prompts: SystemPrompts,
        cancels: CancelRegistry,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self._settings = settings
        self.providers = (
            client if isinstance(client, Providers) else Providers.one_server(settings, client)
        )
        """The models this worker serves (`client`: one server for the catalogue's models)."""
        self._publisher = publisher
        self._coord = coordinator
        self._context = context
        self._prompts = prompts
        self.cancels = cancels
        self.metrics = metrics or WorkerMetrics()
        self.metrics.active.set_function(lambda: len(self.cancels))
        self._bookkeeping = Bookkeeping()
        self._upstream = UpstreamLimit(settings.worker_concurrency)
        self.metrics.upstream_limit.set_function(lambda: self._upstream.aimd.allowed)
        self._heads: set[tuple[str, str, int]] = set()
        """Queued messages whose reply this worker is answering (they beat)."""
        self.asking = Asking(context, prompts)
        """What a reply asks its model: turns, prompt, retrieval, earlier attempts."""
        self.tools: ToolRunner | None = None
        """The tools models may call (None: none)."""
        self.titles: Titler | None = None
        """Who titles untitled sessions after their first reply (None: nobody)."""

    async def note(self, message: UserMessage) -> None:
        """A message that wants no reply: it only joins the context."""
        await self._context.append(message.session_id, user_turn(message))

    async def respond(self, delivery: Delivery) -> bool:
        began, read = await self._begin(delivery)
        message, attempt, place = delivery.message, delivery.attempt, delivery.place
        sid, mid = message.session_id, message.message_id
        next_step = decide.after_begin(began, place)
        if next_step == "ack":
            return True  # a late delivery of a message already answered
        if next_step == "leave":
            log.info(
                "the reply belongs to a newer attempt than %d",
                attempt,
                extra=delivery.log_context(),
            )
            return False
        stop = self.cancels.hold(sid, mid, attempt)
        if attempt > 1:
            self.metrics.redeliveries.inc()
        outcome: Outcome = "failed"
        try:
            if began.cancel_marked:
                stop.set("cancelled")
            if next_step == "wait":
                await self._wait_turn(delivery, stop, began.admitted_at)
                read = {}  # the replies before it changed what it read: read again
            if place:
                self._heads.add((sid, mid, attempt))
            outcome = await self._attempt(delivery, stop, read)
            return outcome == "answered"
        finally:
            self.cancels.release(sid, mid, attempt)
            self._heads.discard((sid, mid, attempt))
            # A failed attempt keeps its place in line: the message comes back, and the
            # session's later messages wait for its reply as they would have. A superseded
            # one leaves the place, the reply in flight and the turn to the newer attempt.
            if outcome == "failed":
                await self._bookkeeping.eventually(
                    lambda: self._coord.finish(sid, mid, attempt, place=place, answered=False),
                    None,
                )

    async def _attempt(
        self, delivery: Delivery, stop: StopSignal, read: dict[str, Answers]
    ) -> Outcome:
        """Refuse or stream the reply, then mark it answered; raises when the attempt fails."""
        message, attempt = delivery.message, delivery.attempt
        sid, mid = message.session_id, message.message_id
        terminal: ReplyEnd | ReplyError
        if stop.reason == "cancelled":
            terminal = decide.cancelled_before_start(message, attempt, self._model_name(message))
            await self._publisher().end(terminal)
        else:
            answer = await self._answer(delivery, stop, read)
            if answer is None:
                return "superseded"  # fenced off: the newer attempt owns the reply
            terminal = answer
        # The terminal event is stored: from here on the message is acked whatever Redis
        # says (a redelivery would stream the reply again); bookkeeping Redis missed is
        # retried in the background.
        appended, replaced = context_update(message, terminal)
        then = self._context.appending(sid, *appended)
        if not await self._bookkeeping.eventually(
            lambda: self._coord.finish(
                sid, mid, attempt, place=delivery.place, answered=True, then=then
            ),
            otherwise=True,
        ):
            log.info(
                "attempt %d ended after a newer attempt took the reply",
                attempt,
                extra=delivery.log_context(),
            )
            return "superseded"
        if replaced is not None:
            await self._context.replace(sid, replaced)
        if self.titles is not None and isinstance(terminal, ReplyEnd):
            self.titles.after(message, attempt, terminal)
        self._count(terminal, stop)
        return "answered"

    async def superseded(self, delivery: Delivery) -> bool:
        """Whether a newer attempt (or the end of the reply) took over `delivery`'s message:
        a failed attempt then hands nothing back, or it would cut the newer one short. False
        when Redis cannot tell."""
        sid, mid = delivery.message.session_id, delivery.message.message_id
        try:
            return not await self._coord.holds(sid, mid, delivery.attempt)
        except RedisError:
            return False

    def _count(self, terminal: ReplyEnd | ReplyError, stop: StopSignal) -> None:
        self.metrics.ended(terminal)
        if isinstance(terminal, ReplyEnd) and terminal.finish_reason == "cancelled":
            self.metrics.cancels.inc()
            if stop.at is not None:
                self.metrics.cancel_latency.observe(time.monotonic() - stop.at)

    async def _begin(self, delivery: Delivery) -> tuple[Beginning, dict[str, Answers]]:
        """`ReplyQueue.begin`, with what the reply reads before its model call
        (`StartReads`); a claim under another number than the delivery count renumbers the
        delivery."""
        message, counted = delivery.message, delivery.attempt
        sid, mid = message.session_id, message.message_id
        reads = StartReads(
            spent=self._coord.spending_reads(
                message,
                default_daily=self._settings.daily_token_budget,
                session_cap=self._settings.session_token_budget,
            ),
            context=self._context.reads(sid),
            prompt=self._prompts.reads(sid),
        )
        began, answers = await patiently(
            lambda: self._coord.begin_and_read(
                sid, mid, counted, place=delivery.place, delivery=delivery.id, reads=reads.commands
            )
        )
        if began.claim == "ours" and began.attempt not in (0, counted):
            log.warning(
                "delivery counted %d, but attempt %d held the reply: the broker lost count;"
                " answering as attempt %d",
                counted,
                counted,
                began.attempt,
                extra=delivery.log_context(),
            )
            delivery.attempt = began.attempt
        return began, reads.split(answers)

    async def watch(self, delivery: Delivery) -> None:
        """Called on every in-progress beat: stop the reply if a newer attempt fenced it off;
        tell the session's waiting messages that its head of line is being answered."""
        message, attempt = delivery.message, delivery.attempt
        sid, mid = message.session_id, message.message_id
        head = (sid, mid, attempt) in self._heads
        beat_s = self._settings.worker_ack_wait_s if head else 0
        try:
            claim = await self._coord.watch(sid, mid, attempt, beat_s=beat_s)
        except RedisError:
            return
        if claim != "ours":
            self.cancels.fence(sid, mid, attempt)

    async def _wait_turn(self, delivery: Delivery, stop: StopSignal, admitted_at: float) -> None:
        """Until every earlier message of the session has its reply (or a cancel comes);
        skipping a head of line nobody answers for longer than an ack wait per delivery and
        the longest retry delay (see `turns.wait_turn`)."""
        settings = self._settings
        stall_s = settings.worker_ack_wait_s * (settings.worker_max_deliver + 1)
        waiting = decide.Waiting(
            delivery.place, stall_s + RETRY_DELAY_MAX_S, since=time.monotonic()
        )
        message = delivery.message
        await wait_turn(
            self._coord,
            waiting,
            Waiter(message.session_id, message.message_id, admitted_at, delivery.log_context()),
            stop,
        )

    async def _answer(
        self, delivery: Delivery, stop: StopSignal, read: dict[str, Answers]
    ) -> ReplyEnd | ReplyError | None:
        """Refuse before the model call (budget, context), or stream the reply; with what
        `_begin` read, if still current."""
        message, settings = delivery.message, self._settings
        budgets = await self._coord.budgets(
            message,
            default_daily=settings.daily_token_budget,
            session_cap=settings.session_token_budget,
            read=read.get("spent"),
        )
        if spent := budgets.exceeded(budgets.spent_today, budgets.spent_in_session):
            return await self._refuse(delivery, "budget_exceeded", budgets.spent(spent))
        served = self.providers.of(message.model)
        if served is None:
            text = f"this worker does not serve model {message.model!r}"
            return await self._refuse(delivery, "unknown_model", text)
        job = await self.asking.job(delivery, served, read)
        if isinstance(job, str):
            return await self._refuse(delivery, "context_too_long", job)
        watch = AttemptWatch(self._coord, self.metrics, message, delivery.attempt, budgets)
        async with self._upstream.call():
            terminal = await generate_reply(job, self._streaming(served), stop, watch)
        overloaded = isinstance(terminal, ReplyError) and terminal.code == "upstream_rate_limited"
        await self._upstream.report(overloaded=overloaded)
        if budgets.any and isinstance(terminal, ReplyEnd):
            unmetered = max(terminal.usage.total_tokens - watch.metered, 0)
            await self._coord.spend(message, unmetered)
        return terminal

    def _model_name(self, message: UserMessage) -> str:
        model = self.providers.catalogue.get(message.model)
        return model.name if model else message.model or ""

    async def _refuse(self, delivery: Delivery, code: str, text: str) -> ReplyError:
        error = decide.refusal(delivery.message, delivery.attempt, code, text, retryable=False)
        await self._publisher().end(error)
        return error

    def _streaming(self, served: Served) -> Streaming:
        return Streaming(
            served.server,
            self._publisher(),
            served.counter,
            self.providers.prices,
            self._settings.worker_coalesce_ms / 1000,
            self.tools,
        )
