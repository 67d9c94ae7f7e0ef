"""Build the persistence app: request-reply handlers, the durable event recorder, and, when
configured, the usage webhook and retention."""

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

import httpx
from faststream import FastStream
from faststream.nats import NatsBroker
from faststream.nats.opentelemetry import NatsTelemetryMiddleware
from faststream.nats.prometheus import NatsPrometheusMiddleware

from persistence import db, handlers, migrate, retention, webhook
from persistence.metrics import PersistenceMetrics
from persistence.recorder import Recorder
from persistence.settings import PersistenceSettings
from shared import stream, subjects, telemetry
from shared.settings import nats_servers
from shared.stream import connect

LOGGER = logging.getLogger("tokenwire.broker")


def create_app(settings: PersistenceSettings) -> FastStream:
    tracing = telemetry.setup_tracing("persistence")
    metrics = PersistenceMetrics()
    broker = NatsBroker(
        nats_servers(settings.nats_url),
        middlewares=[
            # FastStream's own per-subscriber figures, beside tokenwire's
            NatsPrometheusMiddleware(
                registry=metrics.registry,
                app_name="persistence",
                metrics_prefix="tokenwire_faststream",
            ),
            *([NatsTelemetryMiddleware(tracer_provider=tracing)] if tracing else []),
        ],
        name="persistence",
        inbox_prefix=subjects.inbox("persistence"),
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        logger=LOGGER,
        log_level=logging.DEBUG,  # a line per handled message only when debugging
    )
    engine = db.make_engine(settings.database_url)
    sessions = db.sessionmaker(engine)
    handlers.register(broker, sessions)
    tasks: list[asyncio.Task[None]] = []
    http = httpx.AsyncClient(timeout=settings.usage_webhook_timeout_s)

    def spawn(name: str, work: Coroutine[Any, Any, None]) -> None:
        tasks.append(asyncio.create_task(work, name=name))

    async def setup() -> None:
        metrics.serve(settings.metrics_host, settings.metrics_port)
        await stream.prepare(settings, name="persistence")
        if settings.usage_webhook_url:
            nc = await connect(
                settings.nats_url,
                name="persistence-setup",
                watch=False,
                inbox_prefix=subjects.inbox("persistence"),
            )
            try:
                await nc.jetstream().add_consumer(
                    subjects.STREAM, webhook.consumer_config(ack_wait_s=30.0)
                )
            finally:
                await nc.close()
        await migrate.upgrade(engine)

    async def start() -> None:
        js = broker.connection.jetstream()
        spawn(
            "recorder",
            Recorder(
                js,
                sessions,
                batch_size=settings.batch_size,
                retry_delay_s=settings.retry_delay_s,
                metrics=metrics,
            ).run(),
        )
        if settings.usage_webhook_url and settings.usage_webhook_secret:
            sender = webhook.WebhookSender(
                js,
                http,
                url=str(settings.usage_webhook_url),
                secret=settings.usage_webhook_secret.get_secret_value(),
                base_s=settings.usage_webhook_backoff_s,
                cap_s=settings.usage_webhook_backoff_max_s,
            )
            spawn("usage-webhook", sender.run())
        if settings.retention_days:
            spawn(
                "retention",
                retention.prune_forever(
                    sessions, days=settings.retention_days, every_s=settings.retention_every_s
                ),
            )

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
