"""Build the gateway app; NATS, Redis and the session hub are made in its lifespan."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Response, WebSocket
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway import broker_view, ops, ws
from gateway.api import router
from gateway.auth import Authenticator
from gateway.bus import Bus
from gateway.deps import Resources
from gateway.hub import SessionHub
from gateway.limits import Limits
from gateway.metrics import GatewayMetrics
from gateway.presence import Presence
from gateway.sessions import SessionCache
from gateway.settings import GatewaySettings
from shared import stream, subjects, telemetry
from shared.redis import redis_client

STATIC = Path(__file__).parent / "static"
OPS_PAGE = STATIC / "ops.html"


def create_app(settings: GatewaySettings) -> FastAPI:
    metrics = GatewayMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tracing = telemetry.setup_tracing("gateway")
        await stream.prepare(settings, name="gateway")
        hubs: list[SessionHub] = []

        def interrupt_all() -> None:  # the hub is made once the connection is up
            for each in hubs:
                each.interrupt_all()

        nc = await stream.connect(
            settings.nats_url,
            name="gateway",
            timeout_s=settings.nats_connect_timeout_s,
            inbox_prefix=subjects.inbox("gateway"),
            on_gap=interrupt_all,
        )
        redis = redis_client(settings.redis_url, timeout_s=2)
        bus = Bus(nc, timeout_s=settings.rpc_timeout_s)
        hub = SessionHub(nc, metrics)
        hubs.append(hub)
        metrics.track(lambda: hub.connections, lambda: hub.sessions)
        watcher = asyncio.create_task(
            broker_view.refresh_forever(
                bus.js, metrics, settings.broker_view_every_s, settings.nats_monitor_url
            )
        )
        app.state.resources = Resources(
            settings=settings,
            auth=Authenticator(
                secret=settings.secret,
                jwks_url=settings.jwt_jwks_url,
                issuer=settings.jwt_issuer,
                audience=settings.jwt_audience,
            ),
            bus=bus,
            hub=hub,
            redis=redis,
            sessions=SessionCache(bus, ttl_s=settings.session_cache_s),
            presence=Presence(redis, ttl_s=settings.presence_ttl_s),
            limits=Limits(
                redis,
                messages_per_min=settings.message_rate_per_min,
                connections_per_user=settings.max_connections_per_user,
                replies_per_session=settings.max_replies_per_session,
                daily_token_budget=settings.daily_token_budget,
                connection_ttl_s=settings.presence_ttl_s,
            ),
            metrics=metrics,
        )
        try:
            yield
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await redis.aclose()
            telemetry.shutdown(tracing)
            await nc.drain()

    app = FastAPI(
        title="tokenwire gateway",
        version="0.1.0",
        summary="Real-time LLM chat over WebSocket, streamed through NATS JetStream.",
        lifespan=lifespan,
    )
    app.include_router(router)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def chat_page() -> HTMLResponse:
        """The chat page (plain HTML, CSS and JS: no build step, no CDN)."""
        return HTMLResponse((STATIC / "index.html").read_text())

    @app.get("/ops", include_in_schema=False)
    async def ops_page() -> HTMLResponse:
        """The live ops dashboard (self-contained: no CDN)."""
        return HTMLResponse(OPS_PAGE.read_text())

    @app.get("/v1/ops/stats", tags=["ops"])
    async def ops_stats() -> dict[str, Any]:
        """What `/ops` shows: this gateway's counters, latency quantiles and queue depths."""
        return ops.snapshot(metrics.registry)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        """Prometheus metrics (names start with `tokenwire_`)."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.websocket("/v1/sessions/{session_id}/ws")
    async def session_socket(websocket: WebSocket, session_id: str) -> None:
        """The client protocol `tokenwire.v1` (see docs/protocol.md)."""
        await ws.serve(websocket, session_id, websocket.app.state.resources)

    return app
