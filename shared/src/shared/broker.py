"""The one FastStream NATS broker policy of the services that consume the stream (llm-worker,
persistence): reconnect forever, FastStream's own Prometheus figures beside tokenwire's,
tracing when an exporter is set, its own inbox prefix, and a log line per handled message
only when debugging. Needs the `broker` extra of `tokenwire-shared`."""

import logging
from typing import Any

from faststream.nats import NatsBroker
from faststream.nats.opentelemetry import NatsTelemetryMiddleware
from faststream.nats.prometheus import NatsPrometheusMiddleware
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from shared import subjects
from shared.settings import nats_servers

LOGGER = logging.getLogger("tokenwire.broker")


def make_broker(
    nats_url: str,
    *,
    service: str,
    registry: CollectorRegistry,
    tracing: TracerProvider | None,
    **options: Any,
) -> NatsBroker:
    """A broker for `service` (its name, and the inbox prefix its NATS user may read);
    `options` go to `NatsBroker` as they are (e.g. `graceful_timeout`)."""
    return NatsBroker(
        nats_servers(nats_url),
        middlewares=[
            NatsPrometheusMiddleware(
                registry=registry, app_name=service, metrics_prefix="tokenwire_faststream"
            ),
            *([NatsTelemetryMiddleware(tracer_provider=tracing)] if tracing else []),
        ],
        name=service,
        inbox_prefix=subjects.inbox(service),
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        logger=LOGGER,
        log_level=logging.DEBUG,
        **options,
    )
