"""Who may do what, with real processes and two gateways: cancelling a reply (its sender, the
session's owner, an administrator; nobody else), the ops endpoints, revoking tokens (the
sockets they opened close on every gateway) and handing a fresh token to an open socket."""

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from gateway.auth import mint_token
from gateway.revocations import Revocation, encode
from shared import keys
from support.client import User, connect, dev_user, frames_until_end, new_session, next_frame
from support.system import System, system_with_own_nats

pytestmark = [pytest.mark.real, pytest.mark.e2e]
LONG = "[fake tokens=400 delay_ms=10]"


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[System]:
    workdir = tmp_path_factory.mktemp("rights")
    with system_with_own_nats(
        workdir,
        redis_url=redis_url,
        workers=1,
        gateways=2,
        gateway_env={"TOKENWIRE_REVOCATIONS_REFRESH_S": "1"},
    ) as running:
        yield running


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


async def close_code(ws: ClientConnection, within_s: float = 5.0) -> int | None:
    """The code the server closes `ws` with, within `within_s`."""
    async with asyncio.timeout(within_s):
        try:
            while True:
                await ws.recv()
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None


async def refused_at_connect(system: System, sid: str, user: User) -> int | None:
    async with await connect(system.ws_url, sid, user) as ws:
        return await close_code(ws)


async def test_a_revoked_token_closes_its_sockets_on_every_gateway_and_is_refused(
    system: System, http: httpx.AsyncClient
) -> None:
    alice = await dev_user(http)
    other = User(alice.user_id, mint_token(alice.user_id, system.secret, 600))
    sid = await new_session(http, alice)
    ws_second = system.ws_urls[1]
    async with (
        await connect(system.ws_url, sid, alice) as here,
        await connect(ws_second, sid, alice) as there,
        await connect(ws_second, sid, other) as spared,
    ):
        for ws in (here, there, spared):
            assert (await next_frame(ws))["type"] == "ready"
        token_id = jwt.decode(alice.token, options={"verify_signature": False})["jti"]
        denied = await http.post(
            "/v1/admin/revocations", headers=alice.auth, json={"token_id": token_id}
        )
        assert denied.status_code == 403
        revoked_at = time.monotonic()
        made = await http.post(
            "/v1/admin/revocations", headers=admin(system).auth, json={"token_id": token_id}
        )
        assert made.status_code == 201, made.text
        assert await close_code(here) == 4401
        assert await close_code(there) == 4401  # the other gateway heard it
        assert time.monotonic() - revoked_at < 2
        await spared.send(json.dumps({"type": "ping"}))
        assert (await next_frame(spared))["type"] == "pong"  # another token of alice's
    assert (await http.get("/v1/usage", headers=alice.auth)).status_code == 401
    assert (await http.get("/v1/usage", headers=other.auth)).status_code == 200
    assert await refused_at_connect(system, sid, alice) == 4401


async def test_revoking_a_user_ends_every_token_issued_until_then(
    system: System, http: httpx.AsyncClient
) -> None:
    bob = await dev_user(http)
    sid = await new_session(http, bob)
    async with await connect(system.ws_urls[1], sid, bob) as ws:
        assert (await next_frame(ws))["type"] == "ready"
        made = await http.post(
            "/v1/admin/revocations", headers=admin(system).auth, json={"user_id": bob.user_id}
        )
        assert made.status_code == 201, made.text
        assert await close_code(ws) == 4401
    await asyncio.sleep(1.1)  # a token issued after the revocation, a second later
    fresh = User(bob.user_id, mint_token(bob.user_id, system.secret, 600))
    assert (await http.get("/v1/usage", headers=bob.auth)).status_code == 401
    assert (await http.get("/v1/usage", headers=fresh.auth)).status_code == 200


async def test_a_revocation_a_gateway_did_not_hear_closes_its_sockets_at_the_next_read(
    system: System, http: httpx.AsyncClient, redis_url: str
) -> None:
    carol = await dev_user(http)
    sid = await new_session(http, carol)
    token_id = jwt.decode(carol.token, options={"verify_signature": False})["jti"]
    async with await connect(system.ws_url, sid, carol) as ws:
        assert (await next_frame(ws))["type"] == "ready"
        stored = Revocation(until=time.time() + 600, token_id=token_id)
        redis = Redis.from_url(redis_url)
        await redis.hset(keys.REVOCATIONS, stored.field, encode(stored))  # no announcement
        await redis.aclose()
        assert await close_code(ws, within_s=4) == 4401


async def test_signing_out_revokes_the_token_presented(
    system: System, http: httpx.AsyncClient
) -> None:
    dave = await dev_user(http)
    second = User(dave.user_id, mint_token(dave.user_id, system.secret, 600))
    assert (await http.post("/v1/auth/revoke", headers=dave.auth, json={})).status_code == 201
    assert (await http.get("/v1/usage", headers=dave.auth)).status_code == 401
    assert (await http.get("/v1/usage", headers=second.auth)).status_code == 200
    everywhere = await http.post("/v1/auth/revoke", headers=second.auth, json={"everywhere": True})
    assert everywhere.status_code == 201
    assert (await http.get("/v1/usage", headers=second.auth)).status_code == 401


async def test_a_fresh_token_keeps_an_open_socket_past_the_old_one_s_expiry(
    system: System, http: httpx.AsyncClient
) -> None:
    erin, mallory = await dev_user(http), await dev_user(http)
    sid = await new_session(http, erin)
    short = User(erin.user_id, mint_token(erin.user_id, system.secret, 3))
    async with await connect(system.ws_url, sid, short) as ws:
        assert (await next_frame(ws))["type"] == "ready"
        for token, code in (("not-a-jwt", "unauthorized"), (mallory.token, "forbidden")):
            await ws.send(json.dumps({"type": "auth", "token": token}))
            assert (await error_of(ws))["code"] == code
        fresh = mint_token(erin.user_id, system.secret, 600)
        await ws.send(json.dumps({"type": "auth", "token": fresh}))
        renewed = await next_frame(ws)
        assert renewed["type"] == "authenticated"
        assert renewed["participant"] == erin.user_id
        assert renewed["expires_at"] > time.time() + 500
        await asyncio.sleep(4)  # past the first token's expiry
        await ws.send(json.dumps({"type": "ping"}))
        assert (await next_frame(ws))["type"] == "pong"


async def test_a_removed_member_s_sockets_close_on_every_gateway_and_members_may_leave(
    system: System, http: httpx.AsyncClient
) -> None:
    alice, bob, carol = await dev_user(http), await dev_user(http), await dev_user(http)
    sid = await session_of(http, alice, bob, carol)
    members = f"/v1/sessions/{sid}/members"
    async with (
        await connect(system.ws_urls[1], sid, bob) as bob_ws,
        await connect(system.ws_url, sid, carol) as carol_ws,
    ):
        for ws in (bob_ws, carol_ws):
            assert (await next_frame(ws))["type"] == "ready"
        refused = await http.delete(f"{members}/{bob.user_id}", headers=carol.auth)
        assert refused.status_code == 403  # only the owner removes others
        removed = await http.delete(f"{members}/{bob.user_id}", headers=alice.auth)
        assert removed.status_code == 200, removed.text
        assert bob.user_id not in removed.json()["members"]
        assert await close_code(bob_ws) == 4403  # on the other gateway too
        left = await http.delete(f"{members}/{carol.user_id}", headers=carol.auth)
        assert left.status_code == 200, left.text
        assert await close_code(carol_ws) == 4403
    for url in system.ws_urls:
        async with await connect(url, sid, bob) as again:
            assert await close_code(again) == 4403
    assert (await http.get(f"/v1/sessions/{sid}", headers=carol.auth)).status_code == 403
    assert (await http.delete(f"{members}/{alice.user_id}", headers=alice.auth)).status_code == 409
    assert (await http.delete(f"{members}/{bob.user_id}", headers=alice.auth)).status_code == 404
    assert (await http.get(f"/v1/sessions/{sid}", headers=alice.auth)).json()["members"] == [
        alice.user_id
    ]


async def test_a_viewer_sees_the_stream_and_sends_nothing(
    system: System, http: httpx.AsyncClient
) -> None:
    alice, vera = await dev_user(http), await dev_user(http)
    sid = await new_session(http, alice)
    path = f"/v1/sessions/{sid}/members"
    added = await http.post(
        path, headers=alice.auth, json={"user_id": vera.user_id, "role": "viewer"}
    )
    assert added.status_code == 200, added.text
    assert added.json()["viewers"] == [vera.user_id]
    listed = (await http.get("/v1/sessions", headers=vera.auth)).json()["sessions"]
    assert [s["role"] for s in listed] == ["viewer"]
    async with (
        await connect(system.ws_url, sid, alice) as owner,
        await connect(system.ws_url, sid, vera) as viewer,
    ):
        for ws in (owner, viewer):
            assert (await next_frame(ws))["type"] == "ready"
        say = {"type": "message", "message_id": "v1", "content": "[fake tokens=3]"}
        await viewer.send(json.dumps(say))
        refused = await error_of(viewer)
        assert refused["code"] == "forbidden"
        await owner.send(json.dumps({**say, "message_id": "o1"}))
        seen = await frames_until_end(viewer)  # the viewer sees the owner's exchange
        assert seen[0]["type"] == "message"
        assert seen[-1]["type"] == "stream_end"
    stored: list[str] = []
    for _ in range(50):  # persistence records the exchange right after it ends
        history = (await http.get(f"/v1/sessions/{sid}/messages", headers=vera.auth)).json()
        stored = [m["message_id"] for m in history["messages"]]
        if len(stored) == 2:
            break
        await asyncio.sleep(0.1)
    assert stored == ["o1/reply", "o1"]
    promoted = await http.post(path, headers=alice.auth, json={"user_id": vera.user_id})
    assert promoted.json()["viewers"] == []  # added again as a member: she may write now
