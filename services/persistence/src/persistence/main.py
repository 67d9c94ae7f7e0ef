"""Build the persistence app: request-reply handlers, the durable event recorder, and, when
configured, the usage webhook and retention."""

import asyncio
import contextlib

import httpx
from faststream import FastStream
from nats.js import JetStreamContext
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from persistence import db, handlers, retention, schema_version, webhook
from persistence.metrics import PersistenceMetrics
from persistence.recorder import Recorder
from persistence.settings import PersistenceSettings
from shared import stream, subjects, telemetry
from shared.broker import LOGGER, make_broker
from shared.stream import connect


def create_app(settings: PersistenceSettings) -> FastStream:
    tracing = telemetry.setup_tracing("persistence")
    metrics = PersistenceMetrics()
    broker = make_broker(
        settings.nats_url, service="persistence", registry=metrics.registry, tracing=tracing
    )
    engine = db.make_engine(settings.database_url)
    sessions = db.sessionmaker(engine)
    handlers.register(broker, sessions)
    tasks: list[asyncio.Task[None]] = []
    http = httpx.AsyncClient(timeout=settings.usage_webhook_timeout_s)

    async def setup() -> None:
        metrics.serve(settings.metrics_host, settings.metrics_port)
        await stream.prepare(settings, name="persistence")
        if settings.usage_webhook_url:
            await _prepare_webhook_consumer(settings)
        if not await schema_version.is_current(engine):
            from persistence import migrate  # Alembic only when there is a migration to run

            await migrate.upgrade(engine)

    async def start() -> None:
        js = broker.connection.jetstream()
        recorder = Recorder(
            js,
            sessions,
            batch_size=settings.batch_size,
            retry_delay_s=settings.retry_delay_s,
            metrics=metrics,
        )
        tasks.append(asyncio.create_task(recorder.run(), name="recorder"))
        tasks.extend(_optional_tasks(settings, js, http, sessions))

    async def stop() -> None:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await http.aclose()
        await engine.dispose()
        telemetry.shutdown(tracing)

    return FastStream(
        broker, logger=LOGGER, on_startup=[setup], after_startup=[start], on_shutdown=[stop]
    )


async def _prepare_webhook_consumer(settings: PersistenceSettings) -> None:
    nc = await connect(
        settings.nats_url,
        name="persistence-setup",
        watch=False,
        inbox_prefix=subjects.inbox("persistence"),
    )
    try:
        await nc.jetstream().add_consumer(subjects.STREAM, webhook.consumer_config(ack_wait_s=30.0))
    finally:
        await nc.close()


def _optional_tasks(
    settings: PersistenceSettings,
    js: JetStreamContext,
    http: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
) -> list[asyncio.Task[None]]:
    """The usage webhook and retention, when configured."""
    tasks: list[asyncio.Task[None]] = []
    if settings.usage_webhook_url and settings.usage_webhook_secret:
        sender = webhook.WebhookSender(
            js,
            http,
            url=str(settings.usage_webhook_url),
            secret=settings.usage_webhook_secret.get_secret_value(),
            base_s=settings.usage_webhook_backoff_s,
            cap_s=settings.usage_webhook_backoff_max_s,
        )
        tasks.append(asyncio.create_task(sender.run(), name="usage-webhook"))
    if settings.retention_days:
        pruning = retention.prune_forever(
            sessions, days=settings.retention_days, every_s=settings.retention_every_s
        )
        tasks.append(asyncio.create_task(pruning, name="retention"))
    return tasks
