"""The durable `persistence` consumer: writes user messages and terminal reply events to SQL.

Events are fetched in batches, written in one transaction and acknowledged only after the
commit. A database failure naks the batch with a delay: the events stay in the stream and
come back, nothing is dropped. An event that cannot be parsed is terminated and logged.
"""

import logging
from datetime import UTC, datetime

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from persistence import records
from persistence.metrics import PersistenceMetrics
from persistence.pulls import pull_forever
from shared import telemetry
from shared.events import BusEvent, parse_event
from shared.stream import PERSISTENCE_CONSUMER

log = logging.getLogger(__name__)
TRACER = telemetry.tracer(__name__)


class Recorder:
    def __init__(
        self,
        js: JetStreamContext,
        sessions: async_sessionmaker[AsyncSession],
        *,
        batch_size: int,
        retry_delay_s: float,
        metrics: PersistenceMetrics | None = None,
    ) -> None:
        self._metrics = metrics or PersistenceMetrics()
        self._js = js
        self._sessions = sessions
        self._batch_size = batch_size
        self._retry_delay_s = retry_delay_s

    async def run(self) -> None:
        """Consume until cancelled."""
        await pull_forever(
            self._js,
            PERSISTENCE_CONSUMER,
            self.handle,
            batch=self._batch_size,
            retry_delay_s=self._retry_delay_s,
        )

    async def handle(self, batch: list[Msg]) -> None:
        """Record `batch` in one transaction, then ack it; nak it all on a database failure."""
        events: list[tuple[BusEvent, int]] = []
        good: list[Msg] = []
        for msg in batch:
            try:
                events.append((parse_event(msg.data), msg.metadata.sequence.stream))
                good.append(msg)
            except ValidationError as exc:
                log.error("dropping malformed event on %s: %s", msg.subject, exc.errors()[:1])
                await msg.term()
        if not good:
            return
        try:
            async with self._sessions() as db:
                await records.record(db, events)
                await db.commit()
        except (SQLAlchemyError, OSError) as exc:
            self._metrics.db_failures.inc()
            log.warning(
                "database unavailable (%s); %d events will be redelivered",
                type(exc).__name__,
                len(good),
            )
            for msg in good:
                await msg.nak(delay=self._retry_delay_s)
            return
        for msg, (event, _) in zip(good, events, strict=True):
            with TRACER.start_as_current_span(
                "tokenwire.record",
                context=telemetry.extract(msg.headers),
                attributes={
                    "session_id": event.session_id,
                    "message_id": event.message_id,
                    "event": event.type,
                },
            ):
                pass  # the span marks the commit of this event in the message's trace
        now = datetime.now(UTC)
        for event, _ in events:
            self._metrics.events.labels(event.type).inc()
            created = getattr(event, "created_at", None)
            if created is not None:
                self._metrics.lag.observe(max((now - created).total_seconds(), 0))
        for msg in good:
            await msg.ack()
