"""The one FastStream NATS broker policy of the services that consume the stream (llm-worker,
persistence): reconnect forever, FastStream's own Prometheus figures beside tokenwire's,
tracing when an exporter is set, its own inbox prefix, and a log line per handled message
only when debugging. Needs the `broker` extra of `tokenwire-shared`."""

import logging
from typing import Any

from faststream.message import StreamMessage
from faststream.nats import NatsBroker
from faststream.nats.opentelemetry import NatsTelemetryMiddleware
from faststream.nats.prometheus.provider import NatsMetricsSettingsProvider
from faststream.prometheus import ConsumeAttrs, PrometheusMiddleware
from faststream.response import PublishCommand
from nats.aio.msg import Msg
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
            PrometheusMiddleware(
                settings_provider_factory=_families,
                registry=registry,
                app_name=service,
                metrics_prefix="tokenwire_faststream",
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


def _families(msg: object) -> "SubjectFamilies | None":
    """Single messages (and publishes) only: no subscriber here takes batches."""
    return SubjectFamilies() if msg is None or isinstance(msg, Msg) else None


class SubjectFamilies(NatsMetricsSettingsProvider):
    """FastStream's figures labelled by subject family (`chat.*.in`), not by subject: one
    label per session made every new session's first message create its own series (7.6 %
    of a worker's py-spy samples per reply), and series that were never freed."""

    def get_consume_attrs_from_message(self, msg: "StreamMessage[Msg]") -> ConsumeAttrs:
        return {
            "destination_name": subjects.family(msg.raw_message.subject),
            "message_size": len(msg.body),
            "messages_count": 1,
        }

    def get_publish_destination_name_from_cmd(self, cmd: PublishCommand) -> str:
        return subjects.family(cmd.destination)
