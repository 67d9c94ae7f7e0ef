"""The REST API in-process (httpx's ASGI transport, no server, no broker): persistence is a
dictionary behind a stand-in for the gateway's `Bus`, and Redis is an address nobody answers.
The same routes against the real services: tests/e2e/."""

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, cast

import httpx
import pytest
from pydantic import BaseModel
from redis.asyncio import Redis

from gateway.auth import Authenticator
from gateway.bus import Bus, Unavailable
from gateway.deps import Resources
from gateway.hub import SessionHub
from gateway.leases import Leases
from gateway.limits import Limits
from gateway.main import create_app
from gateway.metrics import GatewayMetrics
from gateway.presence import Presence
from gateway.revocations import Revocations
from gateway.sessions import SessionCache
from gateway.settings import GatewaySettings
from gateway.submissions import Submissions
from shared import rpc, subjects
from shared.reply_queue import ReplyQueue
from shared.reply_states import AdmissionLimits
from shared.settings import catalogue


class Persistence:
    """What persistence answers over `svc.*`, kept in a dictionary."""

    def __init__(self) -> None:
        self.sessions: dict[str, rpc.SessionInfo] = {}
        self.down = False
        self.nc = type("Connection", (), {"is_connected": True})()

    async def request(self, subject: str, payload: BaseModel, reply: type[Any]) -> Any:
        if self.down:
            raise Unavailable(subject)
        if subject == subjects.SVC_SESSION_CREATE:
            assert isinstance(payload, rpc.SessionCreate)
            sid = uuid.uuid4().hex
            info = rpc.SessionInfo(
                session_id=sid,
                owner=payload.owner,
                title=payload.title,
                members=[payload.owner],
                created_at=datetime.now(UTC),
                policy=payload.policy,
                system_prompt=payload.system_prompt,
            )
            self.sessions[sid] = info
            return rpc.SessionReply(session=info)
        if subject == subjects.SVC_HISTORY:
            return rpc.HistoryPage(next=None)
        if subject == subjects.SVC_USAGE:
            assert isinstance(payload, rpc.UsageRequest)
            return rpc.UsageReport()
        raise AssertionError(subject)

    async def get_session(self, session_id: str) -> rpc.SessionInfo | None:
        if self.down:
            raise Unavailable("sessions")
        return self.sessions.get(session_id)

    async def add_member(self, session_id: str, user_id: str, by: str) -> rpc.SessionReply:
        info = self.sessions[session_id]
        joined = info.model_copy(update={"members": [*info.members, user_id]})
        self.sessions[session_id] = joined
        return rpc.SessionReply(session=joined)

    async def ping_persistence(self) -> bool:
        return not self.down


@pytest.fixture
def persistence() -> Persistence:
    return Persistence()


@pytest.fixture
async def api(persistence: Persistence) -> AsyncIterator[httpx.AsyncClient]:
    settings = GatewaySettings(auth="dev", env="development")
    app = create_app(settings)
    bus = cast(Bus, persistence)
    nobody = Redis.from_url("redis://127.0.0.1:1", socket_connect_timeout=0.2)
    assert settings.secret is not None
    app.state.resources = Resources(
        settings=settings,
        auth=Authenticator(secret=settings.secret),
        bus=bus,
        hub=SessionHub(cast(Any, None)),
        redis=nobody,
        sessions=SessionCache(bus),
        presence=Presence(nobody, ttl_s=30),
        leases=Leases(nobody, ttl_s=30),
        limits=Limits(nobody, connections_per_user=2, connection_ttl_s=30),
        submissions=Submissions(
            ReplyQueue(nobody), bus, AdmissionLimits(20, 4, 0), catalogue(settings)
        ),
        metrics=GatewayMetrics(),
        revocations=Revocations(nobody, cast(Any, None)),
        membership=cast(Any, None),
        models=catalogue(settings),
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        yield client
    await nobody.aclose()


async def dev_user(api: httpx.AsyncClient) -> dict[str, str]:
    answer = await api.post("/v1/auth/dev-token")
    assert answer.status_code == 200
    return {"authorization": f"Bearer {answer.json()['token']}"}


async def test_the_owner_creates_reads_and_shares_a_session(api: httpx.AsyncClient) -> None:
    alice, bob = await dev_user(api), await dev_user(api)
    created = await api.post("/v1/sessions", headers=alice, json={"title": "t"})
    assert created.status_code == 201
    sid = created.json()["session_id"]
    assert (await api.get(f"/v1/sessions/{sid}", headers=alice)).json()["title"] == "t"
    assert (await api.get(f"/v1/sessions/{sid}", headers=bob)).status_code == 403
    assert (await api.get("/v1/usage", headers=bob)).status_code == 200  # his own usage
    refused = await api.post(f"/v1/sessions/{sid}/members", headers=bob, json={"user_id": "x"})
    assert refused.status_code == 403


async def test_without_a_token_every_route_but_health_is_401(api: httpx.AsyncClient) -> None:
    for path in ("/v1/sessions/abc", "/v1/usage", "/v1/sessions/abc/messages"):
        assert (await api.get(path)).status_code == 401
    assert (await api.post("/v1/sessions")).status_code == 401
    assert (await api.post("/v1/admin/revocations", json={"user_id": "u"})).status_code == 401
    assert (await api.get("/healthz")).status_code == 200


async def test_an_unknown_session_is_404_and_a_bad_history_query_422(
    api: httpx.AsyncClient,
) -> None:
    alice = await dev_user(api)
    assert (await api.get(f"/v1/sessions/{uuid.uuid4().hex}", headers=alice)).status_code == 404
    sid = (await api.post("/v1/sessions", headers=alice)).json()["session_id"]
    page = await api.get(f"/v1/sessions/{sid}/messages?limit=500", headers=alice)
    assert page.status_code == 422
    assert (await api.get(f"/v1/sessions/{sid}/messages", headers=alice)).json() == {
        "messages": [],
        "next": None,
    }


async def test_others_usage_is_for_administrators(api: httpx.AsyncClient) -> None:
    alice = await dev_user(api)
    assert (await api.get("/v1/usage?user_id=bob", headers=alice)).status_code == 403


async def test_dependencies_that_do_not_answer_are_503(
    api: httpx.AsyncClient, persistence: Persistence
) -> None:
    alice = await dev_user(api)
    sid = (await api.post("/v1/sessions", headers=alice)).json()["session_id"]
    assert (await api.get(f"/v1/sessions/{sid}/presence", headers=alice)).status_code == 503
    ready = await api.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"] == {"nats": True, "redis": False, "persistence": True}
    persistence.down = True
    assert (await api.post("/v1/sessions", headers=alice)).status_code == 503
