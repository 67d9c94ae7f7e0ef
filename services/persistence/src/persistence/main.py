"""Build the persistence app: request-reply handlers plus the durable event recorder."""

import asyncio
import contextlib
import logging

from faststream import FastStream
from faststream.nats import NatsBroker

from persistence import db, handlers, migrate
from persistence.recorder import Recorder
from persistence.settings import PersistenceSettings
from shared import stream

LOGGER = logging.getLogger("tokenwire.broker")


def create_app(settings: PersistenceSettings) -> FastStream:
    broker = NatsBroker(
        settings.nats_url,
        name="persistence",
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        logger=LOGGER,
        log_level=logging.DEBUG,  # a line per handled message only when debugging
    )
    engine = db.make_engine(settings.database_url)
    sessions = db.sessionmaker(engine)
    handlers.register(broker, sessions)
    tasks: list[asyncio.Task[None]] = []

    async def setup() -> None:
        await stream.prepare(settings, name="persistence")
        await migrate.upgrade(engine)

    async def start_recorder() -> None:
        recorder = Recorder(
            broker.connection.jetstream(),
            sessions,
            batch_size=settings.batch_size,
            retry_delay_s=settings.retry_delay_s,
        )
        tasks.append(asyncio.create_task(recorder.run(), name="recorder"))

    async def stop_recorder() -> None:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await engine.dispose()

    return FastStream(
        broker,
        logger=LOGGER,
        on_startup=[setup],
        after_startup=[start_recorder],
        on_shutdown=[stop_recorder],
    )
