"""One trace follows a message through gateway, worker and persistence, exported over OTLP/HTTP
to a real receiver."""

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from support.client import connect, dev_user, frames_until_end, new_session, next_frame
from support.ports import free_port
from support.system import System, system_with_own_nats

pytestmark = [pytest.mark.real, pytest.mark.e2e]


class Collector:
    """An OTLP/HTTP trace receiver: keeps (service, trace id, span name) of what it gets."""

    def __init__(self) -> None:
        self.port = free_port()
        self.spans: list[tuple[str, str, str]] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                request = ExportTraceServiceRequest()
                request.ParseFromString(self.rfile.read(int(self.headers["content-length"])))
                for resource_spans in request.resource_spans:
                    service = next(
                        a.value.string_value
                        for a in resource_spans.resource.attributes
                        if a.key == "service.name"
                    )
                    for scope in resource_spans.scope_spans:
                        for span in scope.spans:
                            collector.spans.append((service, span.trace_id.hex(), span.name))
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    running = Collector()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def system(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str, collector: Collector
) -> Iterator[System]:
    with system_with_own_nats(
        tmp_path_factory.mktemp("tracing"),
        redis_url=redis_url,
        workers=1,
        common_env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.port}",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
        },
    ) as running:
        yield running


async def test_a_message_is_one_trace_across_the_services(
    system: System, collector: Collector
) -> None:
    async with httpx.AsyncClient(base_url=system.gateway_url) as http:
        alice = await dev_user(http)
        sid = await new_session(http, alice)
    async with await connect(system.ws_url, sid, alice) as ws:
        await next_frame(ws)
        await ws.send(
            json.dumps({"type": "message", "message_id": "traced", "content": "[fake tokens=3]"})
        )
        await frames_until_end(ws)
    services: set[str] = set()
    for _ in range(60):
        gateway_traces = {
            t for s, t, name in collector.spans if s == "gateway" and name == "tokenwire.message"
        }
        services = {s for s, t, _ in collector.spans if t in gateway_traces}
        if services >= {"gateway", "llm-worker", "persistence"}:
            break
        await asyncio.sleep(0.2)
    assert services >= {"gateway", "llm-worker", "persistence"}, collector.spans
