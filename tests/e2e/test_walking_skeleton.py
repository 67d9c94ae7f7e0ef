"""One message the whole way: WebSocket → gateway → JetStream → worker → model → back, and SQL.

Real processes throughout: nats-server, a Redis-compatible server, SQLite, the fake model,
persistence, two workers and the gateway.
"""

import asyncio
import json
from typing import Any

import httpx
import pytest
import websockets
from redis.asyncio import Redis
from websockets.exceptions import ConnectionClosed

from shared import keys
from support.client import (
    SUBPROTOCOL,
    connect,
    dev_user,
    frames_until_end,
    new_session,
    next_frame,
)
from support.system import System

pytestmark = [pytest.mark.real, pytest.mark.e2e]


async def test_a_message_streams_a_reply_and_is_recorded(
    system: System, http: httpx.AsyncClient
) -> None:
    alice = await dev_user(http)
    sid = await new_session(http, alice)
    async with await connect(system.ws_url, sid, alice) as ws:
        assert ws.subprotocol == "tokenwire.v1"
        ready = await next_frame(ws)
        assert ready == {
            "type": "ready",
            "session_id": sid,
            "participant": alice.user_id,
            "last_seq": 0,
            "recovered": None,
        }
        await ws.send(
            json.dumps({"type": "message", "message_id": "m1", "content": "Hello [fake tokens=12]"})
        )
        frames = await frames_until_end(ws)

    echo, start, *tokens, end = frames
    assert echo["type"] == "message"
    assert (echo["message_id"], echo["participant"]) == ("m1", alice.user_id)
    assert (start["type"], start["message_id"], start["attempt"]) == ("stream_start", "m1", 1)
    # The fake model streams without pauses: the worker joins deltas into fewer events.
    assert 1 <= len(tokens) <= 12
    assert {t["type"] for t in tokens} == {"stream_token"}
    assert [t["index"] for t in tokens] == list(range(len(tokens)))
    assert "".join(t["text"] for t in tokens) == end["text"]
    assert len(end["text"].split()) == 12
    seqs = [f["seq"] for f in frames]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)
    assert end["type"] == "stream_end"
    assert end["text"] == "".join(t["text"] for t in tokens)
    assert end["finish_reason"] == "stop"
    assert end["usage"]["completion_tokens"] == 12
    assert end["usage"]["total_tokens"] > 12
    assert end["ttft_ms"] > 0

    history = await _history_when_complete(http, sid, alice.auth, expected=2)
    assert [(m["role"], m["content"]) for m in history] == [
        ("assistant", end["text"]),
        ("user", "Hello [fake tokens=12]"),
    ]
    assert history[0]["usage"]["completion_tokens"] == 12


async def test_a_reconnecting_client_starts_after_the_head(
    system: System, http: httpx.AsyncClient
) -> None:
    alice = await dev_user(http)
    sid = await new_session(http, alice)
    async with await connect(system.ws_url, sid, alice) as ws:
        await next_frame(ws)
        await ws.send(
            json.dumps({"type": "message", "message_id": "a", "content": "[fake tokens=2]"})
        )
        last_seq = (await frames_until_end(ws))[-1]["seq"]
    async with await connect(system.ws_url, sid, alice) as ws:
        ready = await next_frame(ws)
        assert ready["last_seq"] == last_seq


async def test_a_resent_message_is_stored_and_answered_once(
    system: System, http: httpx.AsyncClient
) -> None:
    alice = await dev_user(http)
    sid = await new_session(http, alice)
    frame = json.dumps({"type": "message", "message_id": "same", "content": "[fake tokens=3]"})
    async with await connect(system.ws_url, sid, alice) as ws:
        await next_frame(ws)
        await ws.send(frame)
        await ws.send(frame)
        frames = await frames_until_end(ws)
        await ws.send(json.dumps({"type": "ping"}))
        assert await next_frame(ws) == {"type": "pong"}  # nothing else was queued
    assert [f["type"] for f in frames].count("message") == 1
    history = await _history_when_complete(http, sid, alice.auth, expected=2)
    assert len(history) == 2


async def test_message_ids_are_scoped_to_their_session(
    system: System, http: httpx.AsyncClient
) -> None:
    alice, bob = await dev_user(http), await dev_user(http)
    sessions = [await new_session(http, alice), await new_session(http, bob)]
    for sid, user in zip(sessions, (alice, bob), strict=True):
        async with await connect(system.ws_url, sid, user) as ws:
            await next_frame(ws)
            await ws.send(
                json.dumps({"type": "message", "message_id": "m1", "content": "[fake tokens=2]"})
            )
            assert (await frames_until_end(ws))[-1]["type"] == "stream_end"


async def test_every_client_of_the_session_gets_the_stream(
    system: System, http: httpx.AsyncClient
) -> None:
    alice = await dev_user(http)
    sid = await new_session(http, alice)
    async with (
        await connect(system.ws_url, sid, alice) as tab1,
        await connect(system.ws_url, sid, alice) as tab2,
    ):
        await next_frame(tab1)
        await next_frame(tab2)
        await tab1.send(
            json.dumps({"type": "message", "message_id": "m1", "content": "[fake tokens=5]"})
        )
        one, two = await asyncio.gather(frames_until_end(tab1), frames_until_end(tab2))
    assert one == two
    assert one[0]["type"] == "message"


async def test_malformed_frames_get_error_frames_and_the_socket_stays_open(
    system: System, http: httpx.AsyncClient
) -> None:
    alice = await dev_user(http)
    sid = await new_session(http, alice)
    bad: list[str | bytes] = [
        "nope",
        "[]",
        "{}",
        '{"type":"shout"}',
        '{"type":"message","message_id":"x"}',
        json.dumps({"type": "message", "message_id": "x", "content": "y" * 10_001}),
        b"\x00\xff binary garbage",
    ]
    async with await connect(system.ws_url, sid, alice) as ws:
        await next_frame(ws)
        for frame in bad:
            await ws.send(frame)
            error = await next_frame(ws)
            assert error["type"] == "error"
            assert error["code"] in ("bad_json", "bad_frame")
            assert error["detail"]
        await ws.send(json.dumps({"type": "ping"}))
        assert await next_frame(ws) == {"type": "pong"}


async def test_a_frame_over_the_size_cap_closes_with_1009(
    system: System, http: httpx.AsyncClient
) -> None:
    alice = await dev_user(http)
    sid = await new_session(http, alice)
    async with await connect(system.ws_url, sid, alice) as ws:
        await next_frame(ws)
        await ws.send("x" * (65 * 1024))
        with pytest.raises(ConnectionClosed) as closed:
            await next_frame(ws)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009


async def test_an_upstream_failure_ends_in_stream_error(
    system: System, http: httpx.AsyncClient
) -> None:
    alice = await dev_user(http)
    sid = await new_session(http, alice)
    async with await connect(system.ws_url, sid, alice) as ws:
        await next_frame(ws)
        await ws.send(
            json.dumps({"type": "message", "message_id": "e1", "content": "[fake fail=500]"})
        )
        *_, error = await frames_until_end(ws)
        assert error["type"] == "stream_error"
        assert (error["code"], error["retryable"]) == ("upstream_error", True)
        assert error["solutions"]
        await ws.send(
            json.dumps(
                {"type": "message", "message_id": "d1", "content": "[fake fail=drop fail_after=2]"}
            )
        )
        *streamed, dropped = await frames_until_end(ws)
        assert dropped["type"] == "stream_error"
        assert dropped["code"] == "upstream_unavailable"
        assert [f["type"] for f in streamed].count("stream_token") == 2


@pytest.mark.parametrize("how", ["header", "subprotocol", "query"])
async def test_each_way_of_presenting_the_token_works(
    system: System, http: httpx.AsyncClient, how: str
) -> None:
    alice = await dev_user(http)
    sid = await new_session(http, alice)
    url = f"{system.ws_url}/v1/sessions/{sid}/ws"
    protocols = [SUBPROTOCOL]
    headers: dict[str, str] = {}
    if how == "header":
        headers = alice.auth
    elif how == "subprotocol":
        protocols.append(websockets.Subprotocol(f"bearer.{alice.token}"))
    else:
        url += f"?token={alice.token}"
    async with websockets.connect(url, subprotocols=protocols, additional_headers=headers) as ws:
        assert ws.subprotocol == "tokenwire.v1"
        assert (await next_frame(ws))["participant"] == alice.user_id
    assert alice.token not in system.named("gateway").tail(1_000_000)  # never logged


async def test_no_token_closes_4401_and_strangers_close_4403(
    system: System, http: httpx.AsyncClient
) -> None:
    alice, mallory = await dev_user(http), await dev_user(http)
    sid = await new_session(http, alice)
    url = f"{system.ws_url}/v1/sessions/{sid}/ws"
    for headers, code in (
        ({}, 4401),
        ({"Authorization": "Bearer forged"}, 4401),
        (mallory.auth, 4403),
    ):
        async with websockets.connect(url, additional_headers=headers) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                await next_frame(ws)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == code
    async with websockets.connect(
        f"{system.ws_url}/v1/sessions/no-such/ws", additional_headers=alice.auth
    ) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await next_frame(ws)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 4403


async def test_rest_refuses_strangers_and_missing_tokens(
    system: System, http: httpx.AsyncClient
) -> None:
    alice, mallory = await dev_user(http), await dev_user(http)
    sid = await new_session(http, alice)
    assert (await http.post("/v1/sessions")).status_code == 401
    assert (await http.get(f"/v1/sessions/{sid}", headers=mallory.auth)).status_code == 403
    assert (await http.get(f"/v1/sessions/{sid}/messages", headers=mallory.auth)).status_code == 403
    assert (await http.get("/v1/sessions/nope", headers=alice.auth)).status_code == 404
    mine = (await http.get(f"/v1/sessions/{sid}", headers=alice.auth)).json()
    assert (mine["owner"], mine["members"]) == (alice.user_id, [alice.user_id])


async def test_a_user_lists_the_sessions_they_are_in_latest_first(
    system: System, http: httpx.AsyncClient
) -> None:
    alice, bob = await dev_user(http), await dev_user(http)
    first = await new_session(http, alice, title="first")
    theirs = await new_session(http, bob, title="bob's")
    added = await http.post(
        f"/v1/sessions/{theirs}/members", headers=bob.auth, json={"user_id": alice.user_id}
    )
    assert added.status_code == 200
    latest = await new_session(http, alice, title="latest")
    assert (await http.get("/v1/sessions")).status_code == 401
    page = (await http.get("/v1/sessions", headers=alice.auth, params={"limit": 2})).json()
    rest = (
        await http.get("/v1/sessions", headers=alice.auth, params={"before": page["next"]})
    ).json()
    listed = page["sessions"] + rest["sessions"]
    assert [s["session_id"] for s in listed] == [latest, theirs, first]
    assert [(s["title"], s["role"], s["members"]) for s in listed] == [
        ("latest", "owner", 1),
        ("bob's", "member", 2),
        ("first", "owner", 1),
    ]
    assert rest["next"] is None
    assert [
        s["session_id"]
        for s in (await http.get("/v1/sessions", headers=bob.auth)).json()["sessions"]
    ] == [theirs]
    bad = await http.get("/v1/sessions", headers=alice.auth, params={"before": "nonsense"})
    assert bad.status_code == 400


async def test_health_and_readiness(system: System, http: httpx.AsyncClient) -> None:
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    ready = (await http.get("/readyz")).json()
    assert ready == {
        "status": "ready",
        "checks": {"nats": True, "redis": True, "persistence": True},
    }


async def _history_when_complete(
    http: httpx.AsyncClient, sid: str, auth: dict[str, str], expected: int
) -> list[dict[str, Any]]:
    for _ in range(50):
        answer = await http.get(f"/v1/sessions/{sid}/messages", headers=auth)
        messages: list[dict[str, Any]] = answer.json()["messages"]
        if len(messages) >= expected:
            return messages
        await asyncio.sleep(0.1)
    raise AssertionError(f"history has {len(messages)} of {expected} messages")


async def test_a_new_session_is_marked_fresh_until_its_first_reply(
    system: System, http: httpx.AsyncClient, redis_url: str
) -> None:
    alice = await dev_user(http)
    sid = await new_session(http, alice)
    redis = Redis.from_url(redis_url)
    try:
        assert await redis.exists(keys.fresh_session(sid))  # the worker needs no history
        async with await connect(system.ws_url, sid, alice) as ws:
            await next_frame(ws)
            await ws.send(json.dumps({"type": "message", "message_id": "m1", "content": "hi"}))
            await frames_until_end(ws)
        for _ in range(50):  # the context is written just after the reply's end
            if not await redis.exists(keys.fresh_session(sid)):
                break
            await asyncio.sleep(0.05)
        assert not await redis.exists(keys.fresh_session(sid))
    finally:
        await redis.aclose()


async def test_the_session_s_system_prompt_reaches_the_model_from_redis_or_persistence(
    system: System, http: httpx.AsyncClient, redis_url: str
) -> None:
    # The fake model counts about a token per four characters: a 400-character prompt adds
    # about 100 prompt tokens to the same message.
    alice = await dev_user(http)
    prompt = "Answer as a pirate would. " * 16

    async def prompt_tokens(sid: str) -> int:
        async with await connect(system.ws_url, sid, alice) as ws:
            await next_frame(ws)
            await ws.send(json.dumps({"type": "message", "message_id": "m1", "content": "hi"}))
            *_, end = await frames_until_end(ws)
        assert end["type"] == "stream_end"
        tokens: int = end["usage"]["prompt_tokens"]
        return tokens

    plain = await prompt_tokens(await new_session(http, alice))
    cached = await prompt_tokens(await new_session(http, alice, system_prompt=prompt))
    uncached_sid = await new_session(http, alice, system_prompt=prompt)
    redis = Redis.from_url(redis_url)
    try:
        assert await redis.get(keys.session_prompt(uncached_sid)) == prompt.encode()
        await redis.delete(keys.session_prompt(uncached_sid))  # the worker asks persistence
        uncached = await prompt_tokens(uncached_sid)
        assert await redis.get(keys.session_prompt(uncached_sid)) == prompt.encode()
    finally:
        await redis.aclose()
    assert cached == uncached
    assert cached - plain >= 80


async def test_the_owner_changes_a_session_and_the_next_reply_follows(
    system: System, http: httpx.AsyncClient
) -> None:
    alice, bob = await dev_user(http), await dev_user(http)
    sid = await new_session(http, alice, title="before")
    path = f"/v1/sessions/{sid}"
    assert (
        await http.post(f"{path}/members", headers=alice.auth, json={"user_id": bob.user_id})
    ).status_code == 200
    prompt = "Answer as a pirate would. " * 16

    async with await connect(system.ws_url, sid, alice) as ws:
        await next_frame(ws)

        async def prompt_tokens(mid: str) -> int:
            content = "[fake tokens=1] hi"
            await ws.send(json.dumps({"type": "message", "message_id": mid, "content": content}))
            *_, end = await frames_until_end(ws)
            tokens: int = end["usage"]["prompt_tokens"]
            return tokens

        plain = await prompt_tokens("m1")
        assert (await http.patch(path, headers=bob.auth, json={"title": "x"})).status_code == 403
        assert (await http.patch(path, headers=alice.auth, json={})).status_code == 422
        changed = await http.patch(
            path, headers=alice.auth, json={"title": "after", "system_prompt": prompt}
        )
        assert changed.status_code == 200, changed.text
        assert (changed.json()["title"], changed.json()["system_prompt"]) == ("after", prompt)
        pirate = await prompt_tokens("m2")
        cleared = await http.patch(path, headers=alice.auth, json={"system_prompt": None})
        assert cleared.json()["system_prompt"] is None
        assert cleared.json()["title"] == "after"  # what is not given stays
        back = await prompt_tokens("m3")
    assert pirate - plain >= 80
    assert pirate - back >= 60
    listed = (await http.get("/v1/sessions", headers=bob.auth)).json()["sessions"]
    assert [s["title"] for s in listed if s["session_id"] == sid] == ["after"]
