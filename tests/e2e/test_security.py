"""Abuse limits and access control with real processes: Origins, expiring tokens, message
rates, connections per user, replies per session, cross-session access, Redis down.

The module has a Redis of its own, so that one test can stop it.
"""

import asyncio
import json
import random
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gateway.auth import mint_token
from support import servers
from support.client import SUBPROTOCOL, User, connect, dev_user, new_session, next_frame
from support.system import System, system_with_own_nats

pytestmark = [pytest.mark.real, pytest.mark.e2e]
RATE = 5


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Server]:
    with servers.running(servers.start_redis(tmp_path_factory.mktemp("redis"))) as server:
        yield server


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, redis: servers.Server) -> Iterator[System]:
    with system_with_own_nats(
        tmp_path_factory.mktemp("security"),
        redis_url=redis.url,
        workers=1,
        gateway_env={
            "TOKENWIRE_MESSAGE_RATE_PER_MIN": str(RATE),
            "TOKENWIRE_MAX_CONNECTIONS_PER_USER": "3",
            "TOKENWIRE_MAX_REPLIES_PER_SESSION": "2",
            "TOKENWIRE_ALLOWED_ORIGINS": "https://app.example",
        },
    ) as running:
        yield running


def say(message_id: str, content: str = "[fake tokens=2]") -> str:
    return json.dumps({"type": "message", "message_id": message_id, "content": content})


async def closed_with(ws: websockets.ClientConnection) -> tuple[int | None, list[Any]]:
    frames: list[Any] = []
    try:
        while True:
            frames.append(await next_frame(ws, relays=True))
    except ConnectionClosed as closed:
        return (closed.rcvd.code if closed.rcvd else None), frames


@pytest.mark.parametrize(
    ("origin", "ok"),
    [
        ("https://evil.example", False),
        ("https://app.example", True),
        ("http://localhost:5173", True),  # dev mode: localhost
    ],
)
async def test_only_allowed_origins_open_sockets(
    system: System, http: httpx.AsyncClient, origin: str, ok: bool
) -> None:
    alice = await dev_user(http)
    sid = await new_session(http, alice)
    url = f"{system.ws_url}/v1/sessions/{sid}/ws"
    if ok:
        async with websockets.connect(
            url, origin=websockets.Origin(origin), additional_headers=alice.auth
        ) as ws:
            assert (await next_frame(ws))["type"] == "ready"
    else:
        with pytest.raises(InvalidStatus) as refused:
            await websockets.connect(
                url, origin=websockets.Origin(origin), additional_headers=alice.auth
            )
        assert refused.value.response.status_code == 403


async def test_a_socket_closes_4401_when_its_token_expires(
    system: System, http: httpx.AsyncClient
) -> None:
    alice = await dev_user(http)
    sid = await new_session(http, alice)
    short = User(alice.user_id, mint_token(alice.user_id, system.secret, 2))
    async with await connect(system.ws_url, sid, short) as ws:
        assert (await next_frame(ws))["type"] == "ready"
        async with asyncio.timeout(6):
            code, _ = await closed_with(ws)
    assert code == 4401


async def test_a_burst_of_300_messages_is_rate_limited(
    system: System, http: httpx.AsyncClient
) -> None:
    alice = await dev_user(http)
    sid = await new_session(http, alice)
    async with await connect(system.ws_url, sid, alice) as ws:
        await next_frame(ws)
        for i in range(300):
            await ws.send(
                json.dumps(
                    {"type": "message", "message_id": f"b{i}", "content": "spam", "reply": False}
                )
            )
        frames = [await next_frame(ws) for _ in range(300)]
    echoes = [f for f in frames if f["type"] == "message"]
    refusals = [f for f in frames if f["type"] == "error"]
    assert len(echoes) <= RATE + 1  # the bucket's size, plus what refilled meanwhile
    assert len(refusals) == 300 - len(echoes)
    assert {f["code"] for f in refusals} == {"rate_limited"}
    assert all(f["retry_after_s"] > 0 for f in refusals)


async def test_connections_per_user_are_capped(system: System, http: httpx.AsyncClient) -> None:
    alice = await dev_user(http)
    sid = await new_session(http, alice)
    tabs = [await connect(system.ws_url, sid, alice) for _ in range(3)]
    try:
        for tab in tabs:
            await next_frame(tab)
        extra = await connect(system.ws_url, sid, alice)
        code, frames = await closed_with(extra)
        assert code == 1013
        assert frames[-1]["type"] == "error"
        assert frames[-1]["code"] == "rate_limited"
        assert frames[-1]["retry_after_s"] > 0
    finally:
        for tab in tabs:
            await tab.close()
    await asyncio.sleep(0.3)
    async with await connect(system.ws_url, sid, alice) as again:  # freed on close
        assert (await next_frame(again))["type"] == "ready"


async def test_replies_per_session_are_capped(system: System, http: httpx.AsyncClient) -> None:
    alice = await dev_user(http)
    made = await http.post("/v1/sessions", headers=alice.auth, json={"policy": "parallel"})
    sid = made.json()["session_id"]
    async with await connect(system.ws_url, sid, alice) as ws:
        await next_frame(ws)
        for i in range(3):
            await ws.send(say(f"p{i}", "[fake tokens=30 delay_ms=20]"))
        frames: list[Any] = []
        while not any(f["type"] == "error" for f in frames):
            frames.append(await next_frame(ws))
    error = next(f for f in frames if f["type"] == "error")
    assert (error["code"], error["retry_after_s"]) == ("busy", 1.0)


async def test_no_one_reaches_a_session_they_are_not_a_member_of(
    system: System, http: httpx.AsyncClient
) -> None:
    users = [await dev_user(http) for _ in range(4)]
    owned = {await new_session(http, user): user for user in users}
    rng = random.Random(20261122)
    pairs = [(sid, user) for sid in owned for user in users if owned[sid] is not user]
    for sid, stranger in rng.sample(pairs, 8):
        for method, path in [
            ("GET", f"/v1/sessions/{sid}"),
            ("GET", f"/v1/sessions/{sid}/messages"),
            ("GET", f"/v1/sessions/{sid}/presence"),
            ("POST", f"/v1/sessions/{sid}/members"),
        ]:
            answer = await http.request(
                method, path, headers=stranger.auth, json={"user_id": stranger.user_id}
            )
            assert answer.status_code == 403, (method, path, answer.text)
        async with websockets.connect(
            f"{system.ws_url}/v1/sessions/{sid}/ws",
            subprotocols=[SUBPROTOCOL],
            additional_headers=stranger.auth,
        ) as ws:
            code, frames = await closed_with(ws)
        assert (code, frames) == (4403, [])


@pytest.mark.parametrize(
    "path", ["/v1/sessions/{sid}/ws/more", "/v1/sessions//ws", "/v1/ws", "/v1/sessions/{sid}"]
)
async def test_a_socket_anywhere_but_a_session_endpoint_is_refused(
    system: System, http: httpx.AsyncClient, path: str
) -> None:
    alice = await dev_user(http)
    sid = await new_session(http, alice)
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(
            system.ws_url + path.format(sid=sid),
            subprotocols=[SUBPROTOCOL],
            additional_headers=alice.auth,
        )
    assert refused.value.response.status_code == 403


async def test_without_redis_generation_fails_closed_and_history_still_reads(
    system: System, http: httpx.AsyncClient, redis: servers.Server
) -> None:
    alice = await dev_user(http)
    sid = await new_session(http, alice)
    async with await connect(system.ws_url, sid, alice) as ws:
        await next_frame(ws)
        await ws.send(say("before"))
        while (await next_frame(ws))["type"] != "stream_end":
            pass
        redis.halt()
        try:
            await ws.send(say("during"))
            refusal = await next_frame(ws)
        finally:
            redis.resume()
    assert (refusal["type"], refusal["code"], refusal["retry_after_s"]) == (
        "error",
        "unavailable",
        1.0,
    )
    history = await http.get(f"/v1/sessions/{sid}/messages", headers=alice.auth)
    assert history.status_code == 200
    assert "during" not in {m["message_id"] for m in history.json()["messages"]}


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        lines = status.read().splitlines()
    for line in lines:
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_a_thousand_malformed_frames_leave_the_gateway_flat_and_healthy(
    system: System, http: httpx.AsyncClient
) -> None:
    alice = await dev_user(http)
    sid = await new_session(http, alice)
    gateway = system.named("gateway").popen.pid
    rng = random.Random(6)
    garbage: list[str | bytes] = [
        "",
        "{",
        "[]",
        "null",
        '{"type":',
        '{"type":"message"}',
        '{"type":"ping","x":1}',
        json.dumps({"type": "message", "message_id": "x" * 500, "content": "c"}),
        json.dumps({"type": "message", "message_id": "m", "content": "c" * 10_001}),
        '{"type":"typing","state":"yes"}',
        "\x00" * 100,
        b"\xff\xfe\x00binary",
        "[" * 5000 + "]" * 5000,
    ]
    async with await connect(system.ws_url, sid, alice) as ws:
        await next_frame(ws)
        for _ in range(200):  # warm up allocator and caches before measuring
            await ws.send(rng.choice(garbage))
            await next_frame(ws)
        before = rss_kib(gateway)
        for _ in range(1000):
            await ws.send(rng.choice(garbage))
            reply = await next_frame(ws)
            assert reply["type"] == "error"
        after = rss_kib(gateway)
        await ws.send(json.dumps({"type": "ping"}))
        assert (await next_frame(ws))["type"] == "pong"
    assert after - before < 2048, (before, after)  # KiB
    assert (await http.get("/readyz")).status_code == 200
