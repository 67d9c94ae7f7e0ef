"""Who may do what, with real processes: cancelling a reply (its sender, the session's owner,
an administrator; nobody else)."""

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection

from gateway.auth import mint_token
from support.client import User, connect, dev_user, frames_until_end, new_session, next_frame
from support.system import System, system_with_own_nats

pytestmark = [pytest.mark.real, pytest.mark.e2e]
LONG = "[fake tokens=400 delay_ms=10]"


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[System]:
    workdir = tmp_path_factory.mktemp("rights")
    with system_with_own_nats(workdir, redis_url=redis_url, workers=1) as running:
        yield running


@pytest.fixture
async def http(system: System) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=system.gateway_url, timeout=10) as client:
        yield client


def admin(system: System) -> User:
    user_id = f"ops-{uuid.uuid4().hex[:8]}"
    return User(user_id, mint_token(user_id, system.secret, 600, role="admin"))


async def session_of(http: httpx.AsyncClient, owner: User, *members: User) -> str:
    sid = await new_session(http, owner)
    for member in members:
        added = await http.post(
            f"/v1/sessions/{sid}/members", headers=owner.auth, json={"user_id": member.user_id}
        )
        assert added.status_code == 200, added.text
    return sid


async def tokens_then(ws: ClientConnection, count: int) -> None:
    seen = 0
    while seen < count:
        if (await next_frame(ws))["type"] == "stream_token":
            seen += 1


async def cancel(ws: ClientConnection, message_id: str) -> None:
    await ws.send(json.dumps({"type": "cancel", "message_id": message_id}))


async def error_of(ws: ClientConnection) -> dict[str, Any]:
    while (frame := await next_frame(ws))["type"] != "error":
        pass
    return frame


async def test_only_the_sender_the_owner_or_an_administrator_cancels_a_reply(
    system: System, http: httpx.AsyncClient
) -> None:
    alice, bob, carol, ops = (
        await dev_user(http),
        await dev_user(http),
        await dev_user(http),
        admin(system),
    )
    sid = await session_of(http, alice, bob, carol, ops)
    async with (
        await connect(system.ws_url, sid, alice) as owner,
        await connect(system.ws_url, sid, bob) as sender,
        await connect(system.ws_url, sid, carol) as other,
        await connect(system.ws_url, sid, ops) as administrator,
    ):
        for ws in (owner, sender, other, administrator):
            assert (await next_frame(ws))["type"] == "ready"
        for message_id, who in (("b1", sender), ("b2", sender), ("b3", sender)):
            await who.send(
                json.dumps({"type": "message", "message_id": message_id, "content": LONG})
            )
            await tokens_then(who, 3)
            await cancel(other, message_id)  # carol's cancel of bob's reply is refused
            refused = await error_of(other)
            assert refused["code"] == "forbidden"
            assert message_id in refused["detail"]
            await tokens_then(who, 3)  # and the reply goes on
            stopper = {"b1": sender, "b2": owner, "b3": administrator}[message_id]
            await cancel(stopper, message_id)
            end = (await frames_until_end(who))[-1]
            assert (end["message_id"], end["finish_reason"]) == (message_id, "cancelled")
        await cancel(other, "never-sent")  # nothing to stop, nothing said
        await other.send(json.dumps({"type": "ping"}))
        while (frame := await next_frame(other))["type"] != "pong":
            assert frame["type"] != "error", frame


@pytest.mark.parametrize("path", ["/metrics", "/v1/ops/stats"])
async def test_ops_endpoints_need_an_administrator_on_the_public_port(
    system: System, http: httpx.AsyncClient, path: str
) -> None:
    member = await dev_user(http)
    assert (await http.get(path)).status_code == 401
    assert (await http.get(path, headers=member.auth)).status_code == 403
    assert (await http.get(path, headers=admin(system).auth)).status_code == 200
    async with httpx.AsyncClient(base_url=system.admin_url, timeout=10) as listener:
        assert (await listener.get(path)).status_code == 200  # loopback: no token needed
    page = await http.get("/ops")  # the page holds no figures; it asks for a token
    assert page.status_code == 200
    assert "administrator" in page.text
