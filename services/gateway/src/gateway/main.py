"""Build the gateway app; NATS, Redis and the session hub are made in its lifespan."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Response, WebSocket
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from nats.aio.client import Client as NatsClient
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.asyncio import Redis
from starlette.types import Receive, Scope, Send

from gateway import broker_view, ops, ws
from gateway.admin_api import router as admin_router
from gateway.api import router
from gateway.auth import Authenticator
from gateway.bus import Bus
from gateway.deps import Resources, require_operator
from gateway.hub import SessionHub
from gateway.leases import Leases
from gateway.limits import Limits
from gateway.membership import Membership
from gateway.message_routes import router as message_router
from gateway.metrics import GatewayMetrics
from gateway.model_pools import ModelPools
from gateway.model_routes import router as models_router
from gateway.presence import Presence
from gateway.revocations import Revocations
from gateway.session_routes import router as session_router
from gateway.sessions import SessionCache
from gateway.settings import GatewaySettings
from gateway.sse import router as sse_router
from gateway.submissions import Submissions
from gateway.unserved import UnservedMessages
from shared import stream, subjects, telemetry
from shared.redis import redis_client
from shared.reply_queue import ReplyQueue
from shared.reply_states import AdmissionLimits
from shared.settings import catalogue

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
        resources = app.state.resources = build_resources(settings, nc, redis, metrics)
        hubs.append(resources.hub)
        await resources.revocations.subscribe()
        await resources.membership.subscribe()
        background = [asyncio.create_task(job) for job in background_jobs(resources)]
        try:
            yield
        finally:
            for task in background:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await redis.aclose()
            telemetry.shutdown(tracing)
            await nc.drain()

    app = Gateway(
        title="tokenwire gateway",
        version="0.1.0",
        summary="Real-time LLM chat over WebSocket, streamed through NATS JetStream.",
        lifespan=lifespan,
    )
    route(app, metrics)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def background_jobs(resources: Resources) -> list[Coroutine[Any, Any, None]]:
    """What a gateway does besides answering: the broker's view, leases, revocations, the
    model pools and the messages they do not serve."""
    settings, submissions = resources.settings, resources.submissions
    jobs = [
        broker_view.refresh_forever(
            resources.bus.js,
            resources.metrics,
            resources.models,
            settings.broker_view_every_s,
            settings.nats_monitor_url,
        ),
        resources.leases.refresh_forever(),
        resources.revocations.refresh_forever(),
    ]
    if submissions.pools is not None:
        jobs.append(submissions.pools.refresh_forever())
    if submissions.unserved is not None:
        jobs.append(submissions.unserved.run_forever())
    return jobs


def route(app: FastAPI, metrics: GatewayMetrics) -> None:
    """Every route: REST, the event stream, the pages (the WebSocket is `Gateway`'s own)."""
    routers = (router, admin_router, session_router, message_router, sse_router, models_router)
    for routes in (*routers, pages(metrics)):
        app.include_router(routes)


def build_resources(
    settings: GatewaySettings, nc: NatsClient, redis: Redis, metrics: GatewayMetrics
) -> Resources:
    """Everything a request or a socket uses, made once the broker connection is up."""
    bus = Bus(nc, timeout_s=settings.rpc_timeout_s)
    hub = SessionHub(nc, metrics)
    metrics.track(lambda: hub.connections, lambda: hub.sessions)
    sessions = SessionCache(bus, ttl_s=settings.session_cache_s)
    revocations = Revocations(redis, nc, refresh_s=settings.revocations_refresh_s)
    models = catalogue(settings)
    queue, pools = ReplyQueue(redis), ModelPools(redis, models)
    unserved = None
    if settings.unserved_timeout_s > 0:
        unserved = UnservedMessages(queue, bus, pools, settings.unserved_timeout_s)
    return Resources(
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
        sessions=sessions,
        presence=Presence(redis, ttl_s=settings.presence_ttl_s),
        leases=Leases(redis, ttl_s=settings.presence_ttl_s),
        limits=Limits(
            redis,
            connections_per_user=settings.max_connections_per_user,
            connection_ttl_s=settings.presence_ttl_s,
        ),
        submissions=Submissions(
            queue,
            bus,
            AdmissionLimits(
                messages_per_min=settings.message_rate_per_min,
                replies_per_session=settings.max_replies_per_session,
                daily_token_budget=settings.daily_token_budget,
                session_token_budget=settings.session_token_budget,
            ),
            models,
            pools,
            unserved,
        ),
        metrics=metrics,
        revocations=revocations,
        membership=Membership(nc, sessions, revocations),
        models=models,
    )


def pages(metrics: GatewayMetrics) -> APIRouter:
    """The chat page, the ops page and what they read."""
    router = APIRouter()

    @router.get("/", include_in_schema=False)
    async def chat_page() -> HTMLResponse:
        """The chat page (plain HTML, CSS and JS: no build step, no CDN)."""
        return HTMLResponse((STATIC / "index.html").read_text())

    @router.get("/ops", include_in_schema=False)
    async def ops_page() -> HTMLResponse:
        """The live ops dashboard (self-contained: no CDN). The page holds no figures: it reads
        `/v1/ops/stats`, with an administrator's token it asks for unless on the admin
        listener."""
        return HTMLResponse(OPS_PAGE.read_text())

    @router.get("/v1/ops/stats", tags=["ops"], dependencies=[Depends(require_operator)])
    async def ops_stats() -> dict[str, Any]:
        """What `/ops` shows: this gateway's counters, latency quantiles and queue depths.
        An administrator's token, or none on the admin listener."""
        return ops.snapshot(metrics.registry)

    @router.get("/metrics", include_in_schema=False, dependencies=[Depends(require_operator)])
    async def prometheus() -> Response:
        """Prometheus metrics (names start with `tokenwire_`): an administrator's token, or
        none on the admin listener."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return router


class Gateway(FastAPI):
    """The REST API through FastAPI; the WebSocket endpoint `/v1/sessions/{session_id}/ws`
    (the client protocol `tokenwire.v1`, docs/protocol.md) straight from the ASGI entry point.
    A socket served through FastAPI's middleware and routing keeps their frames and exit
    stacks alive for as long as it is open: about 12 KiB per idle connection."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            match scope["path"].split("/"):
                case ["", "v1", "sessions", session_id, "ws"] if session_id:
                    scope["app"] = self
                    socket = WebSocket(scope, receive, send)
                    await ws.serve(socket, session_id, self.state.resources)
                    return
        await super().__call__(scope, receive, send)
