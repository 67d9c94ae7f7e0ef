"""Beyond text, with real processes: a model's reasoning streamed as its own events, stored
with the reply, resumed after a dropped connection without gap or duplicate, and stopped by
cancel like tokens; the time on every stored frame; and server-sent events beside the
WebSocket, with sending and cancelling over REST."""

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import websockets

from fake_llm.script import reasoning_pieces, reply_pieces
from support.client import (
    SUBPROTOCOL,
    User,
    connect,
    dev_user,
    frames_until_end,
    new_session,
    next_frame,
    replay,
)
from support.system import System, system_with_own_nats

pytestmark = [pytest.mark.real, pytest.mark.e2e]


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[System]:
    with system_with_own_nats(
        tmp_path_factory.mktemp("rich"),
        redis_url=redis_url,
        workers=0,
        gateway_env={"TOKENWIRE_SSE_HEARTBEAT_S": "0.5"},
    ) as running:
        running.add_worker(  # the fake model's retrieval hook, scripted by each message
            TOKENWIRE_RETRIEVAL_URL=f"{running.llm_url}/v1/_fake/retrieve",
            TOKENWIRE_RETRIEVAL_TIMEOUT_S="1",
        )
        yield running


def reasoning_of(frames: list[dict[str, Any]]) -> str:
    return "".join(f["text"] for f in frames if f["type"] == "stream_reasoning")


async def test_reasoning_streams_before_the_reply_and_is_kept_in_history(
    system: System, http: httpx.AsyncClient
) -> None:
    sid, alice, frames = await ask(system, http, "Why? [fake reasoning=3 tokens=2 delay_ms=5]")
    kinds = [f["type"] for f in frames]
    assert kinds[:2] == ["message", "stream_start"]
    first_token = kinds.index("stream_token")
    assert set(kinds[2:first_token]) == {"stream_reasoning"}  # all of it before the text
    expected = "".join(reasoning_pieces(3))
    assert reasoning_of(frames) == expected
    end = frames[-1]
    assert (end["type"], end["text"], end["reasoning"]) == (
        "stream_end",
        "".join(reply_pieces(2)),
        expected,
    )
    assert (end["usage"]["reasoning_tokens"], end["usage"]["completion_tokens"]) == (3, 5)
    for _ in range(50):  # persistence records it a moment after the end streams
        history = (await http.get(f"/v1/sessions/{sid}/messages", headers=alice.auth)).json()
        replies = [m for m in history["messages"] if m["role"] == "assistant"]
        if replies:
            break
        await asyncio.sleep(0.1)
    assert replies[0]["reasoning"] == expected
    assert replies[0]["usage"]["reasoning_tokens"] == 3


async def test_reasoning_resumes_after_a_dropped_connection_without_gap_or_duplicate(
    system: System, http: httpx.AsyncClient
) -> None:
    alice = await dev_user(http)
    sid = await new_session(http, alice)
    content = "[fake reasoning=30 tokens=3 delay_ms=20]"
    seen: list[dict[str, Any]] = []
    async with await connect(system.ws_url, sid, alice) as ws:
        assert (await next_frame(ws))["type"] == "ready"
        await ws.send(json.dumps({"type": "message", "message_id": "m1", "content": content}))
        while len([f for f in seen if f["type"] == "stream_reasoning"]) < 5:
            seen.append(await next_frame(ws))
    last_seq = max(f["seq"] for f in seen if "seq" in f)
    resumed = await replay(system.ws_url, sid, alice, last_seq)
    frames = seen + resumed
    seqs = [f["seq"] for f in frames if "seq" in f]
    assert seqs == sorted(set(seqs))  # no duplicate, in order
    assert reasoning_of(frames) == "".join(reasoning_pieces(30))
    assert frames[-1]["text"] == "".join(reply_pieces(3))


async def test_cancel_stops_a_reply_while_it_reasons(
    system: System, http: httpx.AsyncClient
) -> None:
    alice = await dev_user(http)
    sid = await new_session(http, alice)
    async with await connect(system.ws_url, sid, alice) as ws:
        assert (await next_frame(ws))["type"] == "ready"
        content = f"[fake reasoning=300 tokens=3 delay_ms=10] {uuid.uuid4().hex}"
        await ws.send(json.dumps({"type": "message", "message_id": "m1", "content": content}))
        thinking = 0
        while thinking < 3:
            thinking += (await next_frame(ws))["type"] == "stream_reasoning"
        await ws.send(json.dumps({"type": "cancel", "message_id": "m1"}))
        frames = await frames_until_end(ws)
    end = frames[-1]
    assert (end["type"], end["finish_reason"], end["text"]) == ("stream_end", "cancelled", "")
    assert "".join(reasoning_pieces(300)).startswith(end["reasoning"])
    assert 0 < len(end["reasoning"]) < len("".join(reasoning_pieces(300)))


async def test_every_stored_frame_says_when_it_was_stored_live_and_replayed_alike(
    system: System, http: httpx.AsyncClient
) -> None:
    sid, alice, live = await ask(system, http, "[fake reasoning=2 tokens=3 delay_ms=5]")
    replayed = await replay(system.ws_url, sid, alice, 0)
    stored_at = {f["seq"]: f["ts"] for f in live}
    # A replay may merge a run of deltas into one frame (with the last one's seq and time).
    assert all(f["ts"] == stored_at[f["seq"]] for f in replayed)
    assert replayed[-1]["seq"] == live[-1]["seq"]
    times = [datetime.fromisoformat(f["ts"]) for f in live]
    assert times == sorted(times)
    assert datetime.now(UTC) - times[0] < timedelta(minutes=1)


async def events(
    http: httpx.AsyncClient,
    url: str,
    headers: dict[str, str],
    until: str = "stream_end",
    limit: int = 10_000,
) -> list[dict[str, Any]]:
    """Server-sent events up to the first named `until` (or `limit` of them), each as
    `{"id", "event", "data"}` (comments as `{"comment"}`)."""
    got: list[dict[str, Any]] = []
    async with http.stream("GET", url, headers=headers, timeout=15) as answer:
        assert answer.status_code == 200, await answer.aread()
        assert answer.headers["content-type"].startswith("text/event-stream")
        event: dict[str, Any] = {}
        async for line in answer.aiter_lines():
            if line.startswith(":"):
                got.append({"comment": line[1:].strip()})
                if len(got) >= limit:
                    return got
            elif line.startswith(("id: ", "event: ")):
                key, _, value = line.partition(": ")
                event[key] = value
            elif line.startswith("data: "):
                event["data"] = json.loads(line[6:])
            elif not line and event:
                got.append(event)
                event = {}
                if got[-1].get("event") == until or len(got) >= limit:
                    return got
    return got


async def test_server_sent_events_carry_the_same_frames_and_resume_by_last_event_id(
    system: System, http: httpx.AsyncClient
) -> None:
    alice = await dev_user(http)
    sid = await new_session(http, alice)
    url = f"/v1/sessions/{sid}/events"
    content = "[fake tokens=40 delay_ms=20]"
    sent = await http.post(
        f"/v1/sessions/{sid}/messages",
        headers=alice.auth,
        json={"message_id": "m1", "content": content},
    )
    assert sent.status_code == 202, sent.text
    seq = sent.json()["seq"]
    first = await events(http, url + "?last_seq=0", alice.auth, until="stream_token", limit=12)
    ready = first[0]
    assert (ready["event"], "id" in ready, ready["data"]["recovered"]) == ("ready", False, True)
    stored = [e for e in first if "id" in e]
    assert (stored[0]["data"]["type"], int(stored[0]["id"])) == ("message", seq)
    for event in stored:
        assert event["event"] == event["data"]["type"]
        assert int(event["id"]) == event["data"]["seq"]
    last_id = stored[-1]["id"]
    rest = await events(http, url, {**alice.auth, "Last-Event-ID": last_id})
    assert rest[0]["data"]["recovered"] is True
    frames = [e["data"] for e in stored + rest if "id" in e]
    seqs = [f["seq"] for f in frames]
    assert seqs == sorted(set(seqs))  # no gap in what was stored, no duplicate
    text = "".join(f["text"] for f in frames if f["type"] == "stream_token")
    assert text == "".join(reply_pieces(40)) == frames[-1]["text"]


async def test_server_sent_events_need_a_member_s_token_and_send_heartbeats(
    system: System, http: httpx.AsyncClient
) -> None:
    alice, mallory = await dev_user(http), await dev_user(http)
    sid = await new_session(http, alice)
    url = f"/v1/sessions/{sid}/events"
    assert (await http.get(url)).status_code == 401
    assert (await http.get(url, headers=mallory.auth)).status_code == 403
    posted = await http.post(
        f"/v1/sessions/{sid}/messages",
        headers=mallory.auth,
        json={"message_id": "x", "content": "hi"},
    )
    assert posted.status_code == 403
    quiet = await events(http, f"{url}?token={alice.token}", {}, limit=3)  # as EventSource can
    assert quiet[0]["event"] == "ready"
    assert {"comment": "heartbeat"} in quiet[1:]


async def test_commands_and_cancels_over_rest(system: System, http: httpx.AsyncClient) -> None:
    alice, bob = await dev_user(http), await dev_user(http)
    sid = await new_session(http, alice)
    await http.post(
        f"/v1/sessions/{sid}/members", headers=alice.auth, json={"user_id": bob.user_id}
    )
    helped = await http.post(
        f"/v1/sessions/{sid}/messages",
        headers=alice.auth,
        json={"message_id": "c1", "content": "/help"},
    )
    assert helped.status_code == 200
    assert (helped.json()["type"], helped.json()["ok"]) == ("command_result", True)
    await http.post(
        f"/v1/sessions/{sid}/messages",
        headers=alice.auth,
        json={"message_id": "m1", "content": "[fake tokens=400 delay_ms=10]"},
    )
    url = f"/v1/sessions/{sid}/events?last_seq=0"
    started = await events(http, url, alice.auth, until="stream_token")
    assert started[-1]["event"] == "stream_token"
    cancel = f"/v1/sessions/{sid}/messages/m1/cancel"
    assert (await http.post(cancel, headers=bob.auth)).status_code == 403  # not his
    assert (await http.post(cancel, headers=alice.auth)).status_code == 202
    ended = await events(http, url, alice.auth)
    assert ended[-1]["data"]["finish_reason"] == "cancelled"


async def ask(
    system: System, http: httpx.AsyncClient, content: str
) -> tuple[str, User, list[dict[str, Any]]]:
    """A new session's reply to `content`: the session, its owner and every frame."""
    alice = await dev_user(http)
    sid = await new_session(http, alice)
    async with await connect(system.ws_url, sid, alice) as ws:
        assert (await next_frame(ws))["type"] == "ready"
        await ws.send(json.dumps({"type": "message", "message_id": "m1", "content": content}))
        return sid, alice, await frames_until_end(ws)


async def test_sources_stream_before_the_first_token_and_reach_the_prompt_and_history(
    system: System, http: httpx.AsyncClient
) -> None:
    content = f"[fake sources=2 tokens=3] {uuid.uuid4().hex}"
    sid, alice, frames = await ask(system, http, content)
    kinds = [f["type"] for f in frames]
    assert kinds.index("stream_sources") < kinds.index("stream_token")
    found = next(f for f in frames if f["type"] == "stream_sources")
    assert [(s["id"], s["title"], s["url"]) for s in found["sources"]] == [
        ("s1", "Source 1", "https://docs.example/1"),
        ("s2", "Source 2", "https://docs.example/2"),
    ]
    end = frames[-1]
    assert (end["sources"], end["warnings"]) == (found["sources"], [])
    async with httpx.AsyncClient(base_url=system.llm_url) as llm:
        calls = (await llm.get("/v1/_fake/streams")).json()
    (call,) = [c for c in calls if c["prompt"] == content]
    assert "Use these sources where they help:" in call["system"]
    assert "[s1] Source 1: What source 1 says." in call["system"]
    replayed = await replay(system.ws_url, sid, alice, 0)
    assert next(f for f in replayed if f["type"] == "stream_sources") == found
    for _ in range(50):  # persistence records it a moment after the end streams
        history = (await http.get(f"/v1/sessions/{sid}/messages", headers=alice.auth)).json()
        replies = [m for m in history["messages"] if m["role"] == "assistant"]
        if replies:
            break
        await asyncio.sleep(0.1)
    assert replies[0]["sources"] == found["sources"]


@pytest.mark.parametrize(
    ("mode", "warning"),
    [
        ("fail", "retrieval failed (HTTPStatusError); answered without it"),
        ("slow", "retrieval timed out after 1 s; answered without it"),
    ],
)
async def test_a_retrieval_that_fails_leaves_the_reply_to_go_on_and_say_so(
    system: System, http: httpx.AsyncClient, mode: str, warning: str
) -> None:
    _, _, frames = await ask(system, http, f"[fake retrieval={mode} tokens=2]")
    assert "stream_sources" not in [f["type"] for f in frames]
    end = frames[-1]
    assert (end["type"], end["text"], end["warnings"]) == (
        "stream_end",
        "".join(reply_pieces(2)),
        [warning],
    )


async def test_messages_and_their_replies_carry_the_sessions_turn(
    system: System, http: httpx.AsyncClient
) -> None:
    alice = await dev_user(http)
    sid = await new_session(http, alice)
    async with await connect(system.ws_url, sid, alice) as ws:
        assert (await next_frame(ws))["type"] == "ready"
        turns = []
        for mid in ("m1", "m2"):
            content = f"[fake tokens=2] {mid}"
            await ws.send(json.dumps({"type": "message", "message_id": mid, "content": content}))
            frames = await frames_until_end(ws)
            turns.append([(f["type"], f["turn"]) for f in frames if "turn" in f])
        made = await http.post(f"/v1/sessions/{sid}/messages/m1/regenerate", headers=alice.auth)
        assert made.status_code == 202, made.text
        version = await frames_until_end(ws)
    assert turns == [
        [("message", 1), ("stream_start", 1), ("stream_end", 1)],
        [("message", 2), ("stream_start", 2), ("stream_end", 2)],
    ]
    assert (version[0]["regenerates"], version[0]["turn"], version[-1]["turn"]) == ("m1", 1, 1)


async def test_sources_resume_after_a_drop_and_stay_with_a_cancelled_reply(
    system: System, http: httpx.AsyncClient
) -> None:
    alice = await dev_user(http)
    sid = await new_session(http, alice)
    seen: list[dict[str, Any]] = []
    async with await connect(system.ws_url, sid, alice) as ws:
        assert (await next_frame(ws))["type"] == "ready"
        content = f"[fake sources=2 tokens=300 delay_ms=20] {uuid.uuid4().hex}"
        await ws.send(json.dumps({"type": "message", "message_id": "m1", "content": content}))
        while [f["type"] for f in seen].count("stream_token") < 3:
            seen.append(await next_frame(ws))
    last_seq = seen[-1]["seq"]
    async with websockets.connect(
        f"{system.ws_url}/v1/sessions/{sid}/ws?last_seq={last_seq}",
        subprotocols=[SUBPROTOCOL],
        additional_headers=alice.auth,
    ) as ws:
        assert (await next_frame(ws))["recovered"] is True
        await ws.send(json.dumps({"type": "cancel", "message_id": "m1"}))
        frames = seen + await frames_until_end(ws)
    seqs = [f["seq"] for f in frames if "seq" in f]
    assert seqs == sorted(set(seqs))  # no gap in order, no duplicate
    [found] = [f for f in frames if f["type"] == "stream_sources"]
    end = frames[-1]
    assert (end["finish_reason"], end["sources"]) == ("cancelled", found["sources"])
    assert len(end["text"].split()) < 300
