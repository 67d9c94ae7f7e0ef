"""The `CHAT` stream and its durable consumers, defined once; connecting with patience.

Every service calls `ensure_stream` at startup (idempotent: creates, or updates a stream whose
configuration drifted), so start order does not matter.
"""

import asyncio
import logging
from collections.abc import Callable

import nats
from nats.aio.client import Client as NatsClient
from nats.errors import SlowConsumerError
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RePublish,
    StorageType,
    StreamConfig,
    StreamInfo,
)
from nats.js.errors import BadRequestError

from shared import subjects
from shared.settings import TokenwireSettings, catalogue, nats_servers

log = logging.getLogger(__name__)

WORKER_CONSUMER = "llm-workers"
PERSISTENCE_CONSUMER = "persistence"
DUPLICATE_WINDOW_S = 120.0
"""A resend of the same `Nats-Msg-Id` within this window is stored once."""


def chat_stream_config(*, replicas: int = 1, max_age_s: float = 7 * 24 * 3600) -> StreamConfig:
    """The `CHAT` stream: stores user messages and reply events, republishes them to `live.>`."""
    return StreamConfig(
        name=subjects.STREAM,
        subjects=list(subjects.STORED),
        storage=StorageType.FILE,
        num_replicas=replicas,
        max_age=max_age_s,
        duplicate_window=DUPLICATE_WINDOW_S,
        republish=RePublish(src=subjects.REPUBLISH_SOURCE, dest=subjects.REPUBLISH_DEST),
        allow_direct=True,
    )


def worker_consumer(pool: str = "") -> str:
    """The work queue of the model `pool`: `llm-workers` for the default model,
    `llm-workers-<model>` for another."""
    return f"{WORKER_CONSUMER}-{pool}" if pool else WORKER_CONSUMER


def worker_consumer_config(
    *, ack_wait_s: float, max_deliver: int, pool: str = ""
) -> ConsumerConfig:
    """`llm-workers` (`-<model>`): a work queue over the user messages for one model, shared
    by the workers that serve it.

    Created before the first message is accepted (see `prepare`), so `ALL` means every
    message since: none is skipped because no worker was running yet.
    """
    return ConsumerConfig(
        durable_name=worker_consumer(pool),
        filter_subject=subjects.pool_in(pool),
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=ack_wait_s,
        max_deliver=max_deliver,
    )


def persistence_consumer_config(*, ack_wait_s: float = 30.0) -> ConsumerConfig:
    """`persistence`: every user message, every terminal reply event, every model call
    recorded apart from a reply end, every title from the model and every system message, from
    the start."""
    return ConsumerConfig(
        durable_name=PERSISTENCE_CONSUMER,
        filter_subjects=[
            subjects.ALL_IN,
            subjects.ALL_IN_POOLS,
            subjects.ALL_OUT_END,
            subjects.ALL_OUT_ERROR,
            subjects.ALL_OUT_CALL,
            subjects.ALL_OUT_TITLE,
            subjects.ALL_SYSTEM,
        ],
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=ack_wait_s,
        max_deliver=-1,
    )


async def ensure_stream(js: JetStreamContext, config: StreamConfig) -> StreamInfo:
    """Create the stream, or bring an existing one to `config`."""
    try:
        return await js.add_stream(config)
    except BadRequestError as exc:
        if exc.err_code != 10058:  # "stream name already in use with a different configuration"
            raise
        log.info("updating stream %s to the current configuration", config.name)
        return await js.update_stream(config)


async def prepare(settings: TokenwireSettings, *, name: str) -> None:
    """Make sure the stream and both durable consumers exist as defined here.

    Every service calls this at startup, on a short-lived connection, before it subscribes or
    accepts a message: whatever starts first, no stored user message is missed by a consumer.
    All services must share the `TOKENWIRE_STREAM_*` and `TOKENWIRE_WORKER_*` settings.
    """
    nc = await connect(
        settings.nats_url,
        name=f"{name}-setup",
        timeout_s=settings.nats_connect_timeout_s,
        watch=False,
        inbox_prefix=subjects.inbox(name),
    )
    try:
        js = nc.jetstream()
        await ensure_stream(
            js,
            chat_stream_config(
                replicas=settings.stream_replicas, max_age_s=settings.stream_max_age_s
            ),
        )
        for consumer in consumer_configs(settings):
            await js.add_consumer(subjects.STREAM, consumer)
    finally:
        await nc.close()


def consumer_configs(settings: TokenwireSettings) -> tuple[ConsumerConfig, ...]:
    """Every model's work queue, and persistence's consumer."""
    models = catalogue(settings)
    return (
        *(
            worker_consumer_config(
                ack_wait_s=settings.worker_ack_wait_s,
                max_deliver=settings.worker_max_deliver,
                pool=models.pool(model.id),
            )
            for model in models.models
        ),
        persistence_consumer_config(),
    )


async def connect(
    url: str | list[str],
    *,
    name: str,
    timeout_s: float = 30.0,
    watch: bool = True,
    inbox_prefix: str = "_INBOX",
    on_gap: Callable[[], None] | None = None,
) -> NatsClient:
    """Connect to NATS, waiting up to `timeout_s` for the server to come up.

    Raises `ConnectionError` when it does not; once connected, the client reconnects forever,
    and with `watch` logs each disconnect and reconnect. `on_gap` is called whenever core
    subscriptions may have missed messages: at a disconnect, and when the client drops
    messages of a slow subscription.
    """

    async def on_error(exc: Exception) -> None:
        if isinstance(exc, SlowConsumerError):
            log.warning("nats: messages dropped on %s (slow consumer)", exc.subject)
            if on_gap is not None:
                on_gap()
            return
        log.debug("nats: %s", exc)

    clients: list[NatsClient] = []
    servers = nats_servers(url) if isinstance(url, str) else url
    redacted = ", ".join(s.split("@")[-1] for s in servers)  # no credentials in logs

    async def on_disconnect() -> None:
        if clients and not clients[0].is_closed:
            log.warning("nats: disconnected from %s; reconnecting", redacted)
            if on_gap is not None:
                on_gap()

    async def on_reconnect() -> None:
        log.info("nats: reconnected to %s", redacted)

    try:
        client = await asyncio.wait_for(
            nats.connect(
                servers,
                name=name,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                connect_timeout=2,
                inbox_prefix=inbox_prefix,
                error_cb=on_error,
                **(
                    {"disconnected_cb": on_disconnect, "reconnected_cb": on_reconnect}
                    if watch or on_gap is not None
                    else {}
                ),
            ),
            timeout_s,
        )
    except TimeoutError:
        raise ConnectionError(f"NATS at {redacted} not reachable within {timeout_s:g} s") from None
    clients.append(client)
    return client
