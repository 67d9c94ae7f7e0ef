"""The broker's view for operators: each model's work queue (`llm-workers[-<id>]`),
persistence's backlog and the stream's size, read through the JetStream API every few seconds
into gauges."""

import asyncio
import logging

import httpx
import nats.errors
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from gateway.metrics import GatewayMetrics
from shared import subjects
from shared.models import Catalogue
from shared.stream import PERSISTENCE_CONSUMER, worker_consumer

log = logging.getLogger(__name__)


async def refresh(js: JetStreamContext, metrics: GatewayMetrics, models: Catalogue) -> None:
    for model in models.ids():
        try:
            workers = await js.consumer_info(subjects.STREAM, worker_consumer(models.pool(model)))
        except NotFoundError:
            continue  # no service with this model in its catalogue has started yet
        metrics.queue_pending.labels(model).set(workers.num_pending or 0)
        metrics.queue_ack_pending.labels(model).set(workers.num_ack_pending or 0)
        metrics.redelivered.labels(model).set(workers.num_redelivered or 0)
        metrics.waiting_pulls.labels(model).set(workers.num_waiting or 0)
    persistence = await js.consumer_info(subjects.STREAM, PERSISTENCE_CONSUMER)
    metrics.persistence_pending.set(
        (persistence.num_pending or 0) + (persistence.num_ack_pending or 0)
    )
    stream = await js.stream_info(subjects.STREAM)
    metrics.stream_messages.set(stream.state.messages)
    metrics.stream_bytes.set(stream.state.bytes)


async def count_workers(http: httpx.AsyncClient, monitor_url: str) -> int:
    """Connections named `llm-worker` in nats-server's `connz`."""
    answer = await http.get(f"{monitor_url.rstrip('/')}/connz", params={"limit": 100_000})
    answer.raise_for_status()
    return sum(c.get("name") == "llm-worker" for c in answer.json().get("connections", []))


async def refresh_forever(
    js: JetStreamContext,
    metrics: GatewayMetrics,
    models: Catalogue,
    every_s: float,
    monitor_url: str | None,
) -> None:
    async with httpx.AsyncClient(timeout=2) as http:
        while True:
            try:
                await refresh(js, metrics, models)
                if monitor_url:
                    metrics.workers_connected.set(await count_workers(http, monitor_url))
            except (nats.errors.Error, TimeoutError, httpx.HTTPError) as exc:
                log.debug("broker view not refreshed: %s", exc)
            await asyncio.sleep(every_s)
