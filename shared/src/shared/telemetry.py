"""Tracing: OpenTelemetry, exported over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.

One trace follows a message: the gateway's span when it stores it, the worker's while it
answers (FastStream's middleware continues the context from the message's headers), and
persistence's when it records the reply. The context travels in NATS headers (W3C
`traceparent`). Without the endpoint, every call here is a no-op.
"""

import os
from collections.abc import Mapping

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor


def setup_tracing(service: str) -> TracerProvider | None:
    """Install an exporting tracer provider for `service`, if an OTLP endpoint is configured."""
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def trace_headers() -> dict[str, str]:
    """The current trace context as NATS headers (empty without a trace)."""
    headers: dict[str, str] = {}
    propagate.inject(headers)
    return headers


def extract(headers: Mapping[str, str] | None) -> Context:
    return propagate.extract(dict(headers or {}))


def shutdown(provider: TracerProvider | None) -> None:
    """Flush what is left to export."""
    if provider is not None:
        provider.shutdown()
