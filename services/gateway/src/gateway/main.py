"""Build the gateway app; NATS, Redis and the session hub are made in its lifespan."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, WebSocket
from redis.asyncio import Redis

from gateway import ws
from gateway.api import router
from gateway.auth import Authenticator
from gateway.bus import Bus
from gateway.deps import Resources
from gateway.hub import SessionHub
from gateway.limits import Limits
from gateway.presence import Presence
from gateway.sessions import SessionCache
from gateway.settings import GatewaySettings
from shared import stream, subjects


def create_app(settings: GatewaySettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await stream.prepare(settings, name="gateway")
        nc = await stream.connect(
            settings.nats_url,
            name="gateway",
            timeout_s=settings.nats_connect_timeout_s,
            inbox_prefix=subjects.inbox("gateway"),
        )
        redis = Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
        bus = Bus(nc, timeout_s=settings.rpc_timeout_s)
        app.state.resources = Resources(
            settings=settings,
            auth=Authenticator(
                secret=settings.secret,
                jwks_url=settings.jwt_jwks_url,
                issuer=settings.jwt_issuer,
                audience=settings.jwt_audience,
            ),
            bus=bus,
            hub=SessionHub(nc),
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
        )
        try:
            yield
        finally:
            await redis.aclose()
            await nc.drain()

    app = FastAPI(
        title="tokenwire gateway",
        version="0.1.0",
        summary="Real-time LLM chat over WebSocket, streamed through NATS JetStream.",
        lifespan=lifespan,
    )
    app.include_router(router)

    @app.websocket("/v1/sessions/{session_id}/ws")
    async def session_socket(websocket: WebSocket, session_id: str) -> None:
        """The client protocol `tokenwire.v1` (see docs/protocol.md)."""
        await ws.serve(websocket, session_id, websocket.app.state.resources)

    return app
