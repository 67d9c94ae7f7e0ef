"""Conversations with real processes: a catalogue of two models, each with a worker pool of
its own, and sessions that choose their model and parameters."""

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import nats
import pytest
import websockets
from nats.js.errors import NotFoundError
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from fake_llm.script import reply_pieces
from gateway import session_changes
from shared import keys, subjects, titles
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
MODELS = [
    {"id": "small", "name": "tokenwire-fake", "label": "Small", "max_tokens": 64},
    {"id": "large", "name": "tokenwire-fake-large", "context_tokens": 16000},
]


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[System]:
    """One worker for each model's pool."""
    workdir = tmp_path_factory.mktemp("conversations")
    with system_with_own_nats(
        workdir, redis_url=redis_url, workers=0, common_env={"TOKENWIRE_MODELS": json.dumps(MODELS)}
    ) as running:
        running.add_worker(TOKENWIRE_WORKER_MODELS="small")
        running.add_worker(TOKENWIRE_WORKER_MODELS="large")
        yield running


@pytest.fixture
async def llm(system: System) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=system.llm_url, timeout=10) as client:
        yield client


async def reply_to(
    system: System, sid: str, user: User, content: str = "hi"
) -> list[dict[str, Any]]:
    mid = uuid.uuid4().hex
    async with await connect(system.ws_url, sid, user) as ws:
        assert (await next_frame(ws))["type"] == "ready"
        await ws.send(json.dumps({"type": "message", "message_id": mid, "content": content}))
        return await frames_until_end(ws)


async def call_for(llm: httpx.AsyncClient, prompt: str) -> dict[str, Any]:
    calls = [s for s in (await llm.get("/v1/_fake/streams")).json() if s["prompt"] == prompt]
    assert len(calls) == 1, calls
    call: dict[str, Any] = calls[0]
    return call


async def test_the_models_are_listed_default_first(http: httpx.AsyncClient) -> None:
    alice = await dev_user(http)
    assert (await http.get("/v1/models")).status_code == 401
    answer = (await http.get("/v1/models", headers=alice.auth)).raise_for_status().json()
    assert answer["default"] == "small"
    small, large = answer["models"]
    assert (small["id"], small["label"], small["max_tokens"], small["default"]) == (
        "small",
        "Small",
        64,
        True,
    )
    assert (large["name"], large["context_tokens"], large["default"]) == (
        "tokenwire-fake-large",
        16000,
        False,
    )
    for _ in range(70):  # gateways read who serves what every 5 s
        if (small["workers"], large["workers"]) == (1, 1):
            break
        await asyncio.sleep(0.1)
        small, large = (await http.get("/v1/models", headers=alice.auth)).json()["models"]
    assert (small["workers"], large["workers"]) == (1, 1)  # one worker in each pool


async def test_each_models_queue_has_its_own_gauges(system: System) -> None:
    async with httpx.AsyncClient(base_url=system.admin_url, timeout=10) as admin:
        for _ in range(70):  # the broker's view is read every 5 s
            text = (await admin.get("/metrics")).text
            if 'tokenwire_broker_queue_waiting_pulls{model="large"}' in text:
                break
            await asyncio.sleep(0.1)
    for model in ("small", "large"):
        for gauge in ("pending", "ack_pending", "redelivered", "waiting_pulls"):
            assert f'tokenwire_broker_queue_{gauge}{{model="{model}"}}' in text
    idle = re.search(r'tokenwire_broker_queue_waiting_pulls\{model="large"\} (\S+)', text)
    assert idle is not None
    assert float(idle[1]) > 0  # the large pool's worker waits for work on its own queue


async def test_a_sessions_model_and_parameters_reach_its_model_call(
    system: System, http: httpx.AsyncClient, llm: httpx.AsyncClient
) -> None:
    alice = await dev_user(http)
    sid = await new_session(http, alice, model="large", temperature=0.5, max_tokens=7)
    prompt = f"[fake tokens=20] {uuid.uuid4().hex}"
    frames = await reply_to(system, sid, alice, prompt)
    assert frames[0]["type"] == "message"
    start, end = frames[1], frames[-1]
    assert start["model"] == "tokenwire-fake-large"
    assert (end["type"], end["finish_reason"], end["usage"]["completion_tokens"]) == (
        "stream_end",
        "length",
        7,
    )
    call = await call_for(llm, prompt)
    assert (call["model"], call["temperature"], call["max_tokens"]) == (
        "tokenwire-fake-large",
        0.5,
        7,
    )
    large_worker = system.processes[-1]  # the worker that serves `large` only
    assert call["worker"].endswith(f"-{large_worker.popen.pid}")

    # Back to the default model and its own parameters: the other pool answers.
    changed = await http.patch(
        f"/v1/sessions/{sid}",
        headers=alice.auth,
        json={"model": None, "temperature": None, "max_tokens": None},
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["model"], changed.json()["temperature"]) == (None, None)
    prompt = f"[fake tokens=3] {uuid.uuid4().hex}"
    frames = await reply_to(system, sid, alice, prompt)
    assert frames[1]["model"] == "tokenwire-fake"
    call = await call_for(llm, prompt)
    assert (call["model"], call["temperature"], call["max_tokens"]) == ("tokenwire-fake", None, 64)
    assert call["worker"].endswith(f"-{system.processes[-2].popen.pid}")


async def test_a_model_or_parameters_the_catalogue_cannot_take_are_refused(
    http: httpx.AsyncClient,
) -> None:
    alice, bob = await dev_user(http), await dev_user(http)
    refused = await http.post("/v1/sessions", headers=alice.auth, json={"model": "gpt-5"})
    assert refused.status_code == 422
    assert refused.json()["detail"] == "no model 'gpt-5'; the models are: small, large"
    sid = await new_session(http, alice)
    url = f"/v1/sessions/{sid}"
    too_hot = await http.patch(url, headers=alice.auth, json={"temperature": 2.5})
    assert too_hot.status_code == 422
    assert too_hot.json()["detail"] == "temperature must be between 0 and 2"
    too_long = await http.patch(url, headers=alice.auth, json={"max_tokens": 9000})
    assert too_long.json()["detail"] == "max_tokens must be between 1 and 7808 for small"
    assert (await http.patch(url, headers=alice.auth, json={"model": "large"})).status_code == 200
    longer = await http.patch(url, headers=alice.auth, json={"max_tokens": 9000})
    assert longer.status_code == 200, longer.text  # the large model's window takes it
    assert (longer.json()["model"], longer.json()["max_tokens"]) == ("large", 9000)
    others = await http.patch(url, headers=bob.auth, json={"model": "small"})
    assert others.status_code == 403


async def command(
    ws: ClientConnection, content: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Send a command; its result, and the frames that came before it (progress, and system
    messages)."""
    mid = uuid.uuid4().hex
    await ws.send(json.dumps({"type": "message", "message_id": mid, "content": content}))
    before: list[dict[str, Any]] = []
    while (frame := await next_frame(ws))["type"] != "command_result":
        before.append(frame)
    assert frame["message_id"] == mid
    return frame, before


async def replies_recorded(
    http: httpx.AsyncClient, sid: str, user: User, count: int
) -> list[dict[str, Any]]:
    """The session's replies in history, newest first, once persistence has `count` of them
    (it records a reply a moment after its end streams)."""
    for _ in range(100):
        history = (await http.get(f"/v1/sessions/{sid}/messages", headers=user.auth)).json()
        replies = [m for m in history["messages"] if m["role"] == "assistant"]
        if len(replies) >= count:
            return replies
        await asyncio.sleep(0.1)
    raise AssertionError(f"{len(replies)} replies recorded, not {count}")


async def system_message(ws: ClientConnection) -> dict[str, Any]:
    while (frame := await next_frame(ws))["type"] != "message":
        pass
    assert frame["role"] == "system"
    return frame


async def test_commands_change_the_session_and_every_member_sees_it(
    system: System, http: httpx.AsyncClient, llm: httpx.AsyncClient
) -> None:
    alice, bob = await dev_user(http), await dev_user(http)
    sid = await new_session(http, alice, title="")
    async with await connect(system.ws_url, sid, alice) as ws:
        assert (await next_frame(ws))["type"] == "ready"
        helped, _ = await command(ws, "/help")
        assert helped["ok"]
        assert "/model [id | default]" in helped["text"]
        assert {c["name"] for c in helped["data"]["commands"]} >= {"model", "export", "clear"}
        unknown, _ = await command(ws, "/frobnicate")
        assert (unknown["ok"], unknown["text"]) == (
            False,
            "unknown command /frobnicate; /help lists them",
        )

        invited, before = await command(ws, f"/invite {bob.user_id}")
        assert invited["ok"], invited
        note = before[-1] if before else await system_message(ws)
        assert (note["role"], note["participant"]) == ("system", alice.user_id)
        assert note["content"] == f"{alice.user_id} invited {bob.user_id}"

        async with await connect(system.ws_url, sid, bob) as other:
            assert (await next_frame(other))["type"] == "ready"
            refused, _ = await command(other, "/model large")
            assert (refused["ok"], refused["text"]) == (
                False,
                "only the session's owner can /model",
            )
            shown, _ = await command(other, "/model")
            assert (shown["ok"], shown["data"]["model"]) == (True, "small")

            changed, _ = await command(ws, "/model large")
            assert changed["ok"], changed
            assert (
                changed["text"]
                == f"{alice.user_id} switched the model to tokenwire-fake-large (large)"
            )
            seen = await system_message(other)  # bob's socket sees what alice did
            assert seen["content"] == changed["text"]
            too_hot, _ = await command(ws, "/temperature 7")
            assert (
                too_hot["text"]
                == "the temperature is between 0 and 2; usage: /temperature [0-2 | default]"
            )
            assert (await command(ws, "/temperature 0.25"))[0]["ok"]
            assert (await command(ws, "/title Lisbon"))[0]["ok"]
            assert (await command(ws, "/system Answer in one line."))[0]["ok"]
            assert (await command(ws, "/max_tokens 5"))[0]["ok"]
            shown, _ = await command(other, "/system")
            assert shown["text"] == "Answer in one line."

            # bob's next message uses what alice set, though his socket opened before
            prompt = f"[fake tokens=2] {uuid.uuid4().hex}"
            await other.send(json.dumps({"type": "message", "message_id": "b1", "content": prompt}))
            frames = await frames_until_end(other)
            assert frames[-1]["type"] == "stream_end"
            call = await call_for(llm, prompt)
            assert (call["model"], call["temperature"], call["max_tokens"]) == (
                "tokenwire-fake-large",
                0.25,
                5,
            )
            assert call["system"] == "Answer in one line."

    info = (await http.get(f"/v1/sessions/{sid}", headers=alice.auth)).json()
    assert (info["title"], info["model"], info["temperature"]) == ("Lisbon", "large", 0.25)
    for _ in range(100):  # persistence records them a moment after they stream
        history = (await http.get(f"/v1/sessions/{sid}/messages", headers=bob.auth)).json()
        notes = [m["content"] for m in history["messages"] if m["role"] == "system"]
        if len(notes) >= 6:
            break
        await asyncio.sleep(0.1)
    assert notes[-1] == f"{alice.user_id} invited {bob.user_id}"  # newest first
    assert (
        len(notes) == 6
    )  # invite, model, temperature, title, system, max_tokens: looking changes nothing


async def test_usage_members_and_export(system: System, http: httpx.AsyncClient) -> None:
    alice = await dev_user(http)
    sid = await new_session(http, alice, title="Export me")
    frames = await reply_to(system, sid, alice, "[fake tokens=4] hello")
    assert frames[-1]["type"] == "stream_end"
    async with await connect(system.ws_url, sid, alice) as ws:
        assert (await next_frame(ws))["type"] == "ready"
        used, _ = await command(ws, "/usage")
        for _ in range(15):  # persistence records the reply a moment after its end streams
            if used["data"]["totals"]["replies"]:
                break
            await asyncio.sleep(0.2)
            used, _ = await command(ws, "/usage")
        assert used["ok"]
        assert used["data"]["totals"]["replies"] == 1
        assert used["data"]["billed"]["calls"] == 1
        assert used["text"].startswith("this session: 1 replies, ")
        members, _ = await command(ws, "/members")
        assert members["data"]["members"] == [
            {"user_id": alice.user_id, "role": "owner", "online": True}
        ]
        exported, before = await command(ws, "/export")
    assert exported["ok"], exported
    progress = [f for f in before if f["type"] == "progress"]
    assert progress[-1]["percent"] == 100
    assert [f["percent"] for f in progress] == sorted(f["percent"] for f in progress)
    markdown = exported["data"]["markdown"]
    assert markdown.startswith("# Export me\n")
    assert "hello" in markdown
    assert exported["data"]["filename"] == "Export-me.md"
    download = await http.get(f"/v1/sessions/{sid}/export", headers=alice.auth)
    assert download.status_code == 200
    assert download.headers["content-type"].startswith("text/markdown")
    assert download.text.split("\n", 3)[3] == markdown.split("\n", 3)[3]  # all but the time


async def test_clear_starts_the_context_afresh(
    system: System, http: httpx.AsyncClient, llm: httpx.AsyncClient, redis_url: str
) -> None:
    alice = await dev_user(http)
    sid = await new_session(http, alice)
    await reply_to(system, sid, alice, "[fake tokens=2] first")
    second = f"[fake tokens=2] {uuid.uuid4().hex}"
    await reply_to(system, sid, alice, second)
    assert (await call_for(llm, second))["messages"] == 4  # system, first, its reply, second
    async with await connect(system.ws_url, sid, alice) as ws:
        assert (await next_frame(ws))["type"] == "ready"
        cleared, _ = await command(ws, "/clear")
    assert cleared["ok"], cleared
    third = f"[fake tokens=2] {uuid.uuid4().hex}"
    await reply_to(system, sid, alice, third)
    assert (await call_for(llm, third))["messages"] == 2  # system, third
    # The workers' cache gone (expired, or Redis restarted): history starts after the clear too.
    await replies_recorded(http, sid, alice, 3)
    redis = Redis.from_url(redis_url)
    await redis.delete(keys.context(sid), keys.fresh_session(sid))
    await redis.aclose()
    fourth = f"[fake tokens=2] {uuid.uuid4().hex}"
    await reply_to(system, sid, alice, fourth)
    assert (await call_for(llm, fourth))["messages"] == 4  # system, third, its reply, fourth


async def test_a_regenerated_reply_is_a_new_version_that_later_replies_see(
    system: System, http: httpx.AsyncClient, llm: httpx.AsyncClient
) -> None:
    alice, bob = await dev_user(http), await dev_user(http)
    sid = await new_session(http, alice)
    await http.post(
        f"/v1/sessions/{sid}/members",
        headers=alice.auth,
        json={"user_id": bob.user_id, "role": "viewer"},
    )
    question = f"[fake tokens=6] {uuid.uuid4().hex}"
    first = await reply_to(system, sid, alice, question)
    mid, first_text = first[0]["message_id"], first[-1]["text"]
    url = f"/v1/sessions/{sid}/messages/{mid}/regenerate"
    assert (
        await http.patch(f"/v1/sessions/{sid}", headers=alice.auth, json={"max_tokens": 2})
    ).status_code == 200

    async with await connect(system.ws_url, sid, alice) as ws:
        assert (await next_frame(ws))["type"] == "ready"
        made = await http.post(url, headers=alice.auth)
        assert made.status_code == 202, made.text
        assert (made.json()["message_id"], made.json()["version"]) == (f"{mid}~v2", 2)
        frames = await frames_until_end(ws)
    start, end = frames[0], frames[-1]
    assert (start["type"], start["message_id"], start["version"], start["regenerates"]) == (
        "stream_start",
        f"{mid}~v2",
        2,
        mid,
    )
    assert all(f["type"] != "message" for f in frames)  # no second copy of the question
    assert end["type"] == "stream_end"
    second_text = end["text"]
    assert second_text != first_text  # two tokens now
    calls = [s for s in (await llm.get("/v1/_fake/streams")).json() if s["prompt"] == question]
    assert [c["messages"] for c in calls] == [2, 2]  # each version sees what came before only

    replies = await replies_recorded(http, sid, alice, 2)
    history = (await http.get(f"/v1/sessions/{sid}/messages", headers=alice.auth)).json()
    assert [(m["in_reply_to"], m["version"], m["current"], m["content"]) for m in replies] == [
        (mid, 2, True, second_text),
        (mid, 1, False, first_text),
    ]
    assert [m["message_id"] for m in history["messages"] if m["role"] == "user"] == [mid]

    follow_up = f"[fake tokens=2] {uuid.uuid4().hex}"
    await reply_to(system, sid, alice, follow_up)
    assert (await call_for(llm, follow_up))["previous"] == second_text  # the current version

    async with await connect(system.ws_url, sid, alice) as ws:
        assert (await next_frame(ws))["type"] == "ready"
        retried, _ = await command(ws, "/retry")
        assert retried["ok"], retried
        assert (retried["data"]["regenerates"], retried["data"]["version"]) == (
            retried["data"]["message_id"].split("~")[0],
            2,
        )
        assert (await frames_until_end(ws))[0]["regenerates"] == retried["data"]["regenerates"]

    unknown = await http.post(f"/v1/sessions/{sid}/messages/nope/regenerate", headers=alice.auth)
    assert unknown.status_code == 404
    viewer = await http.post(url, headers=bob.auth)
    assert viewer.status_code == 403


async def closed_with(ws: ClientConnection, within_s: float = 5.0) -> tuple[int, str]:
    """The code and reason the server closes `ws` with."""

    async def until_closed() -> None:
        async with asyncio.timeout(within_s):
            while True:
                await ws.recv()

    with pytest.raises(ConnectionClosed) as closed:
        await until_closed()
    received = closed.value.rcvd
    assert received is not None
    return received.code, received.reason


async def test_deleting_a_session_takes_its_history_and_stream_and_stops_its_replies(
    system: System, http: httpx.AsyncClient, llm: httpx.AsyncClient
) -> None:
    alice, bob = await dev_user(http), await dev_user(http)
    sid = await new_session(http, alice, title="Secret plans")
    await http.post(
        f"/v1/sessions/{sid}/members", headers=alice.auth, json={"user_id": bob.user_id}
    )
    assert (await http.delete(f"/v1/sessions/{sid}", headers=bob.auth)).status_code == 403
    prompt = f"[fake tokens=400 delay_ms=10] {uuid.uuid4().hex}"
    async with (
        await connect(system.ws_url, sid, alice) as mine,
        await connect(system.ws_url, sid, bob) as theirs,
    ):
        for ws in (mine, theirs):
            assert (await next_frame(ws))["type"] == "ready"
        await mine.send(json.dumps({"type": "message", "message_id": "m1", "content": prompt}))
        while (await next_frame(mine))["type"] != "stream_token":
            pass
        deleted = await http.delete(f"/v1/sessions/{sid}", headers=alice.auth)
        assert deleted.status_code == 204, deleted.text
        assert await closed_with(mine) == (4403, "the session was deleted")
        assert await closed_with(theirs) == (4403, "the session was deleted")

    assert (await http.get(f"/v1/sessions/{sid}", headers=alice.auth)).status_code == 404
    assert (await http.get(f"/v1/sessions/{sid}/messages", headers=alice.auth)).status_code == 404
    listed = (await http.get("/v1/sessions", headers=alice.auth)).json()["sessions"]
    assert sid not in [s["session_id"] for s in listed]
    assert (await http.delete(f"/v1/sessions/{sid}", headers=alice.auth)).status_code == 404
    for _ in range(50):  # the model's stream was closed: the reply stopped
        call = await call_for(llm, prompt)
        if call["ended"]:
            break
        await asyncio.sleep(0.1)
    assert call["closed_early"], call
    await asyncio.sleep(session_changes.PURGE_AGAIN_S + 1)  # what the stopped reply stored, too
    nc = await nats.connect(
        system.named("gateway").env["TOKENWIRE_NATS_URL"], inbox_prefix=subjects.inbox("gateway")
    )
    try:
        js = nc.jetstream()
        with pytest.raises(NotFoundError):
            await js.get_last_msg(subjects.STREAM, subjects.session_stored(sid), direct=True)
    finally:
        await nc.close()
    usage = (await http.get("/v1/usage", headers=alice.auth)).json()
    assert usage["billed"]["calls"] == 1  # the call the deleted session made is still billed


async def test_in_a_group_the_model_sees_who_said_what(
    system: System, http: httpx.AsyncClient, llm: httpx.AsyncClient
) -> None:
    alice, bob = await dev_user(http), await dev_user(http)
    sid = await new_session(http, alice)
    await http.post(
        f"/v1/sessions/{sid}/members", headers=alice.auth, json={"user_id": bob.user_id}
    )
    async with await connect(system.ws_url, sid, alice) as ws:
        assert (await next_frame(ws))["type"] == "ready"
        aside = {"type": "message", "message_id": "a1", "content": "Not fish.", "reply": False}
        await ws.send(json.dumps(aside))
        echo = await next_frame(ws)
        assert (echo["type"], echo["message_id"]) == ("message", "a1")
    question = f"[fake tokens=2] {uuid.uuid4().hex}"
    await asyncio.sleep(0.5)  # the worker adds the aside to the context as it comes
    await reply_to(system, sid, bob, question)
    call = await call_for(llm, f"{bob.user_id}: {question}")
    assert call["previous"] == f"{alice.user_id}: Not fish."  # no reply was asked for it
    assert call["messages"] == 3


async def test_an_untitled_session_is_named_by_the_model_after_its_first_exchange(
    system: System, http: httpx.AsyncClient, llm: httpx.AsyncClient
) -> None:
    alice = await dev_user(http)
    sid = await new_session(http, alice, title="")
    question = f"[fake tokens=3] Plan a trip to Lisbon {uuid.uuid4().hex[:6]}"
    expected = titles.cleaned("".join(reply_pieces(titles.TITLE_MAX_TOKENS)))
    async with await connect(system.ws_url, sid, alice) as ws:
        assert (await next_frame(ws))["type"] == "ready"
        await ws.send(json.dumps({"type": "message", "message_id": "m1", "content": question}))
        assert (await frames_until_end(ws))[-1]["type"] == "stream_end"
        named = await next_frame(ws)
    assert (named["type"], named["message_id"]) == ("session_title", "m1")
    assert (named["title"], named["replaces"]) == (expected, question)
    asked = [s for s in (await llm.get("/v1/_fake/streams")).json() if question in s["system"]]
    assert [(s["prompt"], s["model"], s["max_tokens"], s["streamed"]) for s in asked] == [
        ("Title this conversation.", "tokenwire-fake", titles.TITLE_MAX_TOKENS, False)
    ]
    for _ in range(50):  # persistence records it a moment after it streams
        info = (await http.get(f"/v1/sessions/{sid}", headers=alice.auth)).json()
        if info["title"] == expected:
            break
        await asyncio.sleep(0.1)
    assert info["title"] == expected
    resume = f"{system.ws_url}/v1/sessions/{sid}/ws?last_seq={named['seq'] - 1}"
    async with websockets.connect(
        resume, subprotocols=[SUBPROTOCOL], additional_headers=alice.auth
    ) as again:  # stored: a resume sees it too
        assert (await next_frame(again))["type"] == "ready"
        assert await next_frame(again) == named
    await reply_to(system, sid, alice, "[fake tokens=2] and Porto?")  # a second turn: no title
    for _ in range(50):
        billed = (await http.get("/v1/usage", headers=alice.auth)).json()["billed"]
        if billed["calls"] == 3:
            break
        await asyncio.sleep(0.1)
    assert billed["calls"] == 3  # two replies and the title, billed to the sender
    assert (
        len([s for s in (await llm.get("/v1/_fake/streams")).json() if question in s["system"]])
        == 1
    )
