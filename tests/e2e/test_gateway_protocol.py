"""The gateway's protocol with real processes and two gateways on one NATS: fan-out, resume,
backpressure, presence, typing, membership, keepalive.

Gateway 2 has a tiny send queue, to show the 1013 close and the resume after it.
"""

import asyncio
import base64
import json
import os
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from support.client import (
    SUBPROTOCOL,
    User,
    connect,
    dev_user,
    frames_until_end,
    new_session,
    next_frame,
)
from support.system import System, system_with_own_nats

pytestmark = [pytest.mark.real, pytest.mark.e2e]

GATEWAY_ENV = {
    "TOKENWIRE_WS_SNDBUF_BYTES": "4096",
    "TOKENWIRE_WS_PING_INTERVAL_S": "1",
    "TOKENWIRE_WS_PING_TIMEOUT_S": "1",
    "TOKENWIRE_PRESENCE_TTL_S": "3",
    "TOKENWIRE_SESSION_CACHE_S": "0",
}


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[System]:
    workdir = tmp_path_factory.mktemp("gateways")
    with system_with_own_nats(
        workdir,
        redis_url=redis_url,
        workers=2,
        gateways=2,
        gateway_env=GATEWAY_ENV,
        gateway_envs=[{}, {"TOKENWIRE_SEND_QUEUE_FRAMES": "16"}],
        # One event per delta: these tests drive the gateway's own merging and bounds.
        worker_env={"TOKENWIRE_WORKER_COALESCE_MS": "0"},
    ) as running:
        yield running


async def shared_session(http: httpx.AsyncClient) -> tuple[str, User, User]:
    alice, bob = await dev_user(http), await dev_user(http)
    sid = await new_session(http, alice)
    added = await http.post(
        f"/v1/sessions/{sid}/members", headers=alice.auth, json={"user_id": bob.user_id}
    )
    assert added.status_code == 200, added.text
    return sid, alice, bob


def normalized(frames: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str, int]:
    """A stream with merges undone: non-token frames, all token text, the last token seq."""
    tokens = [f for f in frames if f["type"] == "stream_token"]
    others = [f for f in frames if f["type"] != "stream_token"]
    return others, "".join(t["text"] for t in tokens), tokens[-1]["seq"] if tokens else 0


def say(message_id: str, content: str) -> str:
    return json.dumps({"type": "message", "message_id": message_id, "content": content})


async def test_two_tabs_and_a_second_user_on_two_gateways_get_identical_streams(
    system: System, http: httpx.AsyncClient
) -> None:
    sid, alice, bob = await shared_session(http)
    gw1, gw2 = system.ws_urls
    async with (
        await connect(gw1, sid, alice) as tab1,
        await connect(gw2, sid, alice) as tab2,
        await connect(gw2, sid, bob) as other,
    ):
        for ws in (tab1, tab2, other):
            await next_frame(ws)
        await tab2.send(say("m1", "[fake tokens=40 delay_ms=5]"))
        streams = await asyncio.gather(*(frames_until_end(ws) for ws in (tab1, tab2, other)))
    first = normalized(streams[0])
    assert all(normalized(s) == first for s in streams)
    others, text, _ = first
    assert [f["type"] for f in others] == ["message", "stream_start", "stream_end"]
    assert others[0]["participant"] == alice.user_id
    assert text == others[-1]["text"]


async def test_a_client_that_drops_mid_reply_resumes_with_no_gap_and_no_duplicate(
    system: System, http: httpx.AsyncClient
) -> None:
    alice = await dev_user(http)
    sid = await new_session(http, alice)
    gw1, gw2 = system.ws_urls
    before: list[dict[str, Any]] = []
    ws = await connect(gw1, sid, alice)
    await next_frame(ws)
    await ws.send(say("long", "[fake tokens=150 delay_ms=10]"))
    while sum(f["type"] == "stream_token" for f in before) < 20:
        before.append(await next_frame(ws))
    ws.transport.abort()  # the network drops: no close handshake
    last_seq = before[-1]["seq"]

    async with websockets.connect(
        f"{gw2}/v1/sessions/{sid}/ws?last_seq={last_seq}",
        subprotocols=[SUBPROTOCOL],
        additional_headers=alice.auth,
    ) as resumed:
        ready = await next_frame(resumed)
        assert ready["recovered"] is True
        after = await frames_until_end(resumed, timeout_s=30)

    assert after[0]["seq"] > last_seq
    frames = before + after
    seqs = [f["seq"] for f in frames]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)
    tokens = [f for f in frames if f["type"] == "stream_token"]
    indexes = [t["index"] for t in tokens]
    assert indexes == sorted(indexes)
    assert indexes[:20] == list(range(20))
    end = frames[-1]
    assert end["type"] == "stream_end"
    assert "".join(t["text"] for t in tokens) == end["text"]
    assert len(end["text"].split()) == 150


async def test_resume_cursors_the_stream_cannot_serve_are_not_recovered(
    system: System, http: httpx.AsyncClient
) -> None:
    alice = await dev_user(http)
    sid = await new_session(http, alice)
    base = f"{system.ws_url}/v1/sessions/{sid}/ws"
    async with websockets.connect(
        f"{base}?last_seq=999999999999", additional_headers=alice.auth
    ) as ws:
        assert (await next_frame(ws))["recovered"] is False
    async with websockets.connect(
        f"{base}?last_seq=yesterday", additional_headers=alice.auth
    ) as ws:
        assert (await next_frame(ws))["recovered"] is None
        error = await next_frame(ws)
        assert (error["type"], error["code"]) == ("error", "bad_frame")
        await ws.send(json.dumps({"type": "ping"}))
        assert (await next_frame(ws))["type"] == "pong"


async def small_receive_buffer_connection(url: str, sid: str, user: User) -> ClientConnection:
    """A client whose kernel receive buffer is tiny, so not reading backs up the server."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    host, port = url.removeprefix("ws://").split(":")
    sock.connect((host, int(port)))
    return await websockets.connect(
        f"{url}/v1/sessions/{sid}/ws",
        sock=sock,
        subprotocols=[SUBPROTOCOL],
        additional_headers=user.auth,
        max_size=2**24,
    )


def widest_merge(frames: list[dict[str, Any]], delta_chars: int) -> int:
    """The most model deltas one token frame carried (every delta has `delta_chars`
    characters; the worker joins a few, the gateway joins many for a slow client)."""
    return max(len(f["text"]) for f in frames if f["type"] == "stream_token") // delta_chars


async def test_a_slow_reader_gets_merged_frames_and_never_delays_a_fast_one(
    system: System, http: httpx.AsyncClient
) -> None:
    alice = await dev_user(http)
    sid = await new_session(http, alice)
    gw1 = system.ws_urls[0]
    async with (
        await connect(gw1, sid, alice) as fast,
        await small_receive_buffer_connection(gw1, sid, alice) as slow,
    ):
        await next_frame(fast)
        await next_frame(slow)
        # About 1,000 deltas a second of 200 characters: far more than the socket buffers hold.
        await fast.send(say("big", "[fake tokens=1000 delay_ms=1 chars=200]"))
        fast_frames = await frames_until_end(fast, timeout_s=60)  # slow has read nothing yet
        slow_frames = await frames_until_end(slow, timeout_s=60)
    _, fast_text, fast_last = normalized(fast_frames)
    _, slow_text, slow_last = normalized(slow_frames)
    assert fast_text == slow_text == fast_frames[-1]["text"]
    assert fast_last == slow_last
    assert widest_merge(slow_frames, 200) >= 200
    assert widest_merge(fast_frames, 200) < widest_merge(slow_frames, 200) / 4


async def read_until_closed(ws: ClientConnection, into: list[dict[str, Any]]) -> ConnectionClosed:
    """Read frames into `into` until the server closes; returns how it closed."""
    try:
        while True:
            into.append(await next_frame(ws))
    except ConnectionClosed as closed:
        return closed


async def test_past_the_hard_bound_a_slow_client_is_closed_1013_and_resumes(
    system: System, http: httpx.AsyncClient
) -> None:
    alice = await dev_user(http)
    sid = await new_session(http, alice)
    gw1, gw2 = system.ws_urls  # gateway 2 queues at most 16 events per client
    got: list[dict[str, Any]] = []
    async with (
        await connect(gw1, sid, alice) as writer,
        await small_receive_buffer_connection(gw2, sid, alice) as slow,
    ):
        await next_frame(writer)
        await next_frame(slow)
        await writer.send(say("flood", "[fake tokens=1000 delay_ms=0]"))
        await frames_until_end(writer, timeout_s=60)
        closed = await read_until_closed(slow, got)
    assert closed.rcvd is not None
    assert closed.rcvd.code == 1013
    async with websockets.connect(
        f"{gw1}/v1/sessions/{sid}/ws?last_seq={got[-1]['seq']}",
        subprotocols=[SUBPROTOCOL],
        additional_headers=alice.auth,
    ) as resumed:
        assert (await next_frame(resumed))["recovered"] is True
        rest = await frames_until_end(resumed, timeout_s=30)
    frames = got + rest
    _, text, _ = normalized(frames)
    assert text == frames[-1]["text"]
    assert len(text.split()) == 1000


async def test_presence_and_typing_cross_gateways(system: System, http: httpx.AsyncClient) -> None:
    sid, alice, bob = await shared_session(http)
    gw1, gw2 = system.ws_urls
    async with await connect(gw1, sid, alice) as a:
        await next_frame(a)
        async with await connect(gw2, sid, bob) as b:
            await next_frame(b)
            assert await next_frame(a, relays=True) == {
                "type": "presence",
                "participant": bob.user_id,
                "state": "joined",
            }
            present = await http.get(f"/v1/sessions/{sid}/presence", headers=alice.auth)
            assert present.json() == {"participants": sorted([alice.user_id, bob.user_id])}
            await b.send(json.dumps({"type": "typing", "state": True}))
            assert await next_frame(a, relays=True) == {
                "type": "typing",
                "participant": bob.user_id,
                "state": True,
            }
            await b.send(json.dumps({"type": "ping"}))
            assert (await next_frame(b, relays=True))["type"] == "pong"  # no echo of own typing
        assert await next_frame(a, relays=True) == {
            "type": "presence",
            "participant": bob.user_id,
            "state": "left",
        }
        present = await http.get(f"/v1/sessions/{sid}/presence", headers=alice.auth)
        assert present.json() == {"participants": [alice.user_id]}


async def test_only_the_owner_adds_members_and_members_get_in(
    system: System, http: httpx.AsyncClient
) -> None:
    sid, alice, bob = await shared_session(http)
    carol = await dev_user(http)
    refused = await http.post(
        f"/v1/sessions/{sid}/members", headers=bob.auth, json={"user_id": carol.user_id}
    )
    assert refused.status_code == 403
    again = await http.post(
        f"/v1/sessions/{sid}/members", headers=alice.auth, json={"user_id": bob.user_id}
    )
    assert sorted(again.json()["members"]) == sorted([alice.user_id, bob.user_id])
    async with await connect(system.ws_urls[1], sid, bob) as ws:
        assert (await next_frame(ws))["participant"] == bob.user_id
    stranger = await http.get(f"/v1/sessions/{sid}/presence", headers=carol.auth)
    assert stranger.status_code == 403


async def test_a_silent_client_is_pinged_and_reaped(
    system: System, http: httpx.AsyncClient
) -> None:
    alice = await dev_user(http)
    sid = await new_session(http, alice)
    host, port = system.gateway_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET /v1/sessions/{sid}/ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Authorization: Bearer {alice.token}\r\n\r\n".encode()
    )
    await writer.drain()
    assert (await reader.readline()).startswith(b"HTTP/1.1 101")
    # Never answer the server's pings: within ping interval + timeout (1 s + 1 s) it hangs up.
    async with asyncio.timeout(8):
        while await reader.read(65536):
            pass
    writer.close()
