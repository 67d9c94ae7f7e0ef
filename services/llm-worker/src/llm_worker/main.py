"""Build the worker app: the OpenAI client, the broker, the reply handler."""

import logging

from faststream import FastStream
from faststream.nats import NatsBroker
from openai import AsyncOpenAI

from llm_worker import handlers
from llm_worker.publisher import JetStreamPublisher, ReplyPublisher
from llm_worker.settings import WorkerSettings
from shared import stream

LOGGER = logging.getLogger("tokenwire.broker")


def openai_client(settings: WorkerSettings) -> AsyncOpenAI:
    """A client for the configured server; local servers need no key, so one is made up."""
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "unused"
    return AsyncOpenAI(
        api_key=key,
        base_url=settings.openai_base_url,
        timeout=settings.llm_timeout_s,
        max_retries=settings.llm_max_retries,
    )


def create_app(
    settings: WorkerSettings,
    client: AsyncOpenAI | None = None,
    publisher: ReplyPublisher | None = None,
) -> FastStream:
    """The worker; `client` and `publisher` replace the real ones in tests."""
    broker = NatsBroker(
        settings.nats_url,
        name="llm-worker",
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        logger=LOGGER,
        log_level=logging.DEBUG,  # a line per handled message only when debugging
    )
    llm = client or openai_client(settings)

    publishers: list[ReplyPublisher] = [publisher] if publisher else []

    def get_publisher() -> ReplyPublisher:
        if not publishers:  # one JetStream context per process: it owns the async-ack inbox
            publishers.append(JetStreamPublisher(broker.connection.jetstream()))
        return publishers[0]

    handlers.register(broker, settings, llm, get_publisher)

    async def setup() -> None:
        await stream.prepare(settings, name="llm-worker")

    async def close() -> None:
        await llm.close()

    return FastStream(broker, logger=LOGGER, on_startup=[setup], after_shutdown=[close])
