"""The worker's handlers: user messages from the work queues of the models it serves
(`llm-workers`, `llm-workers-<model>`), and cancels."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from faststream import AckPolicy
from faststream.nats import JStream, NatsBroker, NatsMessage, PullSub
from nats.errors import NotJSMessageError
from pydantic import ValidationError

from llm_worker.delivery import Delivery
from llm_worker.responder import RETRY_DELAY_MAX_S, Responder
from llm_worker.settings import WorkerSettings
from shared import subjects
from shared.events import UserMessage
from shared.stream import worker_consumer, worker_consumer_config

log = logging.getLogger(__name__)
RETRY_DELAY_S = 1.0
"""After a failed attempt, the message comes back after this, doubled for each delivery it
has had (1, 2, 4, 8 s…, at most `RETRY_DELAY_MAX_S`): a broker failover of several seconds
must not use up all of `TOKENWIRE_WORKER_MAX_DELIVER` deliveries."""


def retry_delay(attempt: int) -> float:
    return min(RETRY_DELAY_S * 2.0 ** max(attempt - 1, 0), RETRY_DELAY_MAX_S)


async def the_message(msg: NatsMessage) -> NatsMessage:
    """The decoder of the worker's subscribers: a handler takes FastStream's message itself
    and parses its body once, with the contract's model. The worker's broker injects nothing
    (`apply_types=False`; the handlers' `NatsMessage` annotation, FastStream's context alias,
    keeps the message out of the AsyncAPI payload): FastDepends resolved that argument in a
    thread of its own for every message, and FastStream decoded every body as JSON first."""
    return msg


def register(
    broker: NatsBroker, settings: WorkerSettings, responder: Responder, models: list[str]
) -> None:
    """Handle the messages for `models` (catalogue ids), and every cancel."""
    pools = [responder.providers.catalogue.pool(model) for model in models]
    subscribers = [
        loop for pool in pools for loop in pull_loops(broker, settings, pool, len(pools))
    ]

    async def on_user_message(msg: NatsMessage) -> None:
        try:
            message = UserMessage.model_validate_json(msg.raw_message.data)
        except ValidationError as exc:
            log.error("terminating malformed user message: %s", exc.errors()[:1])
            await msg.reject()
            return
        if not message.reply:
            await responder.note(message)
            await msg.ack()
            return
        delivery = Delivery(message, delivery_attempt(msg), stream_sequence(msg))
        try:
            async with _in_progress(
                msg, settings.worker_ack_wait_s / 3, lambda: responder.watch(delivery)
            ):
                ours = await responder.respond(delivery)
        except asyncio.CancelledError:
            # Draining: hand the message back at once instead of after the ack wait.
            await msg.nack()
            raise
        except Exception:
            # The attempt failed (e.g. the broker went away mid-reply): deliver the message
            # again soon, backing off, rather than after the whole ack wait. Unless a newer
            # attempt has it already (this worker stalled): handing it back would take it
            # from that attempt mid-reply.
            with contextlib.suppress(Exception):
                if not await responder.superseded(delivery):
                    await msg.nack(delay=retry_delay(delivery.attempt))
            raise
        if ours:
            await msg.ack()

    for subscriber in subscribers:
        subscriber(on_user_message)

    @broker.subscriber(subjects.ALL_CANCEL, decoder=the_message)
    async def on_cancel(msg: NatsMessage) -> None:
        session_id, _ = subjects.split(msg.raw_message.subject)
        responder.cancels.cancel(session_id, msg.raw_message.data.decode(errors="replace"))


def pull_loops(
    broker: NatsBroker, settings: WorkerSettings, pool: str = "", pools: int = 1
) -> list[Any]:
    """Several pull loops on the durable consumer of the model `pool`, sharing the worker's
    concurrency with the other `pools`: each fetch is a round trip, and one loop alone made a
    burst of messages wait in line for their turn to be fetched. One message a fetch:
    nats-py's fetch of a larger batch holds the first message of a lingering pull until the
    batch fills or the pull expires."""
    fetchers = max(1, min(settings.worker_fetchers, settings.worker_concurrency) // pools)
    return [
        broker.subscriber(
            subjects.pool_in(pool),
            stream=JStream(subjects.STREAM, declare=False),
            durable=worker_consumer(pool),
            config=worker_consumer_config(
                ack_wait_s=settings.worker_ack_wait_s,
                max_deliver=settings.worker_max_deliver,
                pool=pool,
            ),
            pull_sub=PullSub(batch_size=1, timeout=5.0),
            max_workers=-(-settings.worker_concurrency // (fetchers * pools)),
            ack_policy=AckPolicy.MANUAL,
            inbox_prefix=f"{subjects.inbox('llm-worker')}.".encode(),
            decoder=the_message,
            include_in_schema=i == 0 and not pool,  # one channel in the AsyncAPI document
        )
        for i in range(fetchers)
    ]


def delivery_attempt(msg: NatsMessage) -> int:
    """How many times the stream has delivered `msg` (1 for a message outside JetStream)."""
    try:
        return msg.raw_message.metadata.num_delivered
    except NotJSMessageError:
        return 1


def stream_sequence(msg: NatsMessage) -> int:
    try:
        return msg.raw_message.metadata.sequence.stream
    except NotJSMessageError:
        return 0


@contextlib.asynccontextmanager
async def _in_progress(
    msg: NatsMessage, every_s: float, also: Callable[[], Awaitable[None]]
) -> AsyncIterator[None]:
    """Every `every_s`, tell the server `msg` is still being worked on, and run `also`.

    Stopped by an event, not only by cancelling: nats-py's publish swallows a CancelledError
    that lands while it flushes, and a beat cancelled there would never end.
    """
    done = asyncio.Event()

    async def beat() -> None:
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), every_s)
                return
            await msg.in_progress()
            await also()

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        done.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
