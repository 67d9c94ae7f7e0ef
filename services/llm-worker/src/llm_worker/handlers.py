"""The worker's one handler: a user message from the `llm-workers` consumer becomes a reply."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from faststream import AckPolicy
from faststream.nats import JStream, NatsBroker, NatsMessage, PullSub
from nats.errors import NotJSMessageError
from openai import AsyncOpenAI
from pydantic import ValidationError

from llm_worker.publisher import ReplyPublisher
from llm_worker.replies import ReplyOptions, generate_reply
from llm_worker.settings import WorkerSettings
from shared import subjects
from shared.events import UserMessage
from shared.stream import WORKER_CONSUMER, worker_consumer_config

log = logging.getLogger(__name__)


def register(
    broker: NatsBroker,
    settings: WorkerSettings,
    client: AsyncOpenAI,
    publisher: Callable[[], ReplyPublisher],
) -> None:
    """Subscribe the reply handler; `publisher()` gives the publisher once the broker is up."""
    options = ReplyOptions(
        model=settings.llm_model,
        max_tokens=settings.llm_max_tokens,
        system_prompt=settings.system_prompt,
    )

    @broker.subscriber(
        subjects.ALL_IN,
        stream=JStream(subjects.STREAM, declare=False),
        durable=WORKER_CONSUMER,
        config=worker_consumer_config(
            ack_wait_s=settings.worker_ack_wait_s, max_deliver=settings.worker_max_deliver
        ),
        pull_sub=PullSub(batch_size=1, timeout=5.0),
        max_workers=settings.worker_concurrency,
        ack_policy=AckPolicy.MANUAL,
    )
    async def on_user_message(msg: NatsMessage) -> None:
        try:
            message = UserMessage.model_validate_json(msg.raw_message.data)
        except ValidationError as exc:
            log.error("terminating malformed user message: %s", exc.errors()[:1])
            await msg.reject()
            return
        if not message.reply:
            await msg.ack()
            return
        attempt = delivery_attempt(msg)
        async with _in_progress(msg, every_s=settings.worker_ack_wait_s / 3):
            await generate_reply(
                message, attempt, client=client, publisher=publisher(), options=options
            )
        await msg.ack()


def delivery_attempt(msg: NatsMessage) -> int:
    """How many times the stream has delivered `msg` (1 for a message outside JetStream)."""
    try:
        return msg.raw_message.metadata.num_delivered
    except NotJSMessageError:
        return 1


@contextlib.asynccontextmanager
async def _in_progress(msg: NatsMessage, every_s: float) -> AsyncIterator[None]:
    """Tell the server, every `every_s`, that `msg` is still being worked on."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(every_s)
            await msg.in_progress()

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
