"""Tool calls with real processes: the fake model asks for a tool, the worker calls the fake
tool's endpoint and the model goes on; every client sees the call stream as
`stream_tool_call` frames, history keeps it, a dropped connection resumes it without gap or
duplicate, cancel stops a running tool, and a worker killed after a side-effecting tool ran
does not make the reply run it again."""

import asyncio
import json
import os
import signal
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tokenwire_client import Client

from fake_llm.script import reply_pieces
from shared.frames import ServerFrame, StreamEndFrame, StreamToolCallFrame
from support.client import (
    connect,
    dev_user,
    frames_until_end,
    history,
    new_session,
    next_frame,
    replay,
)
from support.fake_model import fake_streams, fake_tool_calls, fake_tools, streaming_worker
from support.system import System, system_with_own_nats

pytestmark = [pytest.mark.real, pytest.mark.e2e]


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[System]:
    with system_with_own_nats(
        tmp_path_factory.mktemp("tools"),
        redis_url=redis_url,
        workers=0,
        common_env={"TOKENWIRE_WORKER_ACK_WAIT_S": "2"},
    ) as running:
        running.add_worker(**worker_env(running))
        yield running


def worker_env(system: System) -> dict[str, str]:
    return {"TOKENWIRE_TOOLS": fake_tools(system.llm_url, "TOOL_TOKEN"), "TOOL_TOKEN": "t0ken"}


def say(mid: str, content: str) -> str:
    return json.dumps({"type": "message", "message_id": mid, "content": content})


def calls_of(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f for f in frames if f["type"] == "stream_tool_call"]


async def test_a_tool_call_streams_runs_and_the_reply_goes_on(
    system: System, http: httpx.AsyncClient
) -> None:
    alice = await dev_user(http)
    sid = await new_session(http, alice)
    content = f"[fake tool=lookup tokens=3] {uuid.uuid4().hex}"
    async with await connect(system.ws_url, sid, alice) as ws:
        assert (await next_frame(ws))["type"] == "ready"
        await ws.send(say("m1", content))
        frames = await frames_until_end(ws)
    calls = calls_of(frames)
    # The first names the call (no arguments yet); its argument deltas follow, joined when they
    # come faster than the worker's window (50 ms), as tokens are.
    statuses = [c["status"] for c in calls]
    assert statuses[-2:] == ["running", "done"]
    assert set(statuses[:-2]) == {"arguments"}
    assert 2 <= len(statuses[:-2]) <= 4
    assert calls[0]["arguments"] == ""
    assert {(c["call_id"], c["name"], c["step"]) for c in calls} == {
        (calls[0]["call_id"], "lookup", 1)
    }
    arguments = "".join(c["arguments"] for c in calls)
    assert json.loads(arguments) == {"query": "step 1"}
    assert json.loads(calls[-1]["result"]) == {"tool": "lookup", "answer": "3 results for step 1"}
    kinds = [f["type"] for f in frames]
    assert kinds.index("stream_token") > kinds.index("stream_tool_call")
    end = frames[-1]
    assert end["text"] == "".join(reply_pieces(3))
    [called] = end["tool_calls"]
    assert (called["status"], called["arguments"], called["result"]) == (
        "done",
        arguments,
        calls[-1]["result"],
    )
    assert end["usage"]["completion_tokens"] == 3 + 3  # the call's arguments, then the answer
    [desk] = [c for c in await fake_tool_calls(system) if c["message_id"] == "m1"]
    assert (desk["arguments"], desk["authorization"]) == ({"query": "step 1"}, "Bearer t0ken")
    streams = await fake_streams(system)
    answer_seen = [s for s in streams if s["prompt"] == calls[-1]["result"]]
    assert len(answer_seen) == 1, streams  # the second call's prompt ends with the tool's answer
    replayed = await replay(system.ws_url, sid, alice, 0)  # a replay joins runs of tokens
    assert [f for f in replayed if f["type"] not in ("message", "stream_token")] == [
        f for f in frames[1:] if f["type"] != "stream_token"
    ]
    [reply] = [m for m in await history(http, sid, alice, 2) if m["role"] == "assistant"]
    assert reply["tool_calls"] == end["tool_calls"], reply


async def test_tool_calls_resume_after_a_dropped_connection_without_gap_or_duplicate(
    system: System,
) -> None:
    frames: list[ServerFrame] = []
    async with await Client.dev(system.gateway_url) as client:  # the Python client library
        sid = await client.create_session()
        async with client.session(sid) as session:
            content = "[fake tool=lookup tool_steps=3 tokens=3 delay_ms=40]"
            async for frame in session.ask(content):
                frames.append(frame)
                if sum(isinstance(f, StreamToolCallFrame) for f in frames) == 6:
                    await session.reconnect()  # the connection drops in the middle of a step
            assert session.reconnects == 1
    seqs = [f.seq for f in frames if hasattr(f, "seq")]
    assert seqs == sorted(set(seqs))
    ended = [f for f in frames if isinstance(f, StreamToolCallFrame) and f.status == "done"]
    assert [c.step for c in ended] == [1, 2, 3]
    end = frames[-1]
    assert isinstance(end, StreamEndFrame)
    assert [c.call_id for c in ended] == [c.call_id for c in end.tool_calls]


async def test_cancel_stops_a_running_tool(system: System, http: httpx.AsyncClient) -> None:
    alice = await dev_user(http)
    sid = await new_session(http, alice)
    content = f"[fake tool=lookup tool_delay_ms=20000] {uuid.uuid4().hex}"
    async with await connect(system.ws_url, sid, alice) as ws:
        assert (await next_frame(ws))["type"] == "ready"
        await ws.send(say("m1", content))
        frames: list[dict[str, Any]] = []
        while not any(c["status"] == "running" for c in calls_of(frames)):
            frames.append(await next_frame(ws))
        await ws.send(json.dumps({"type": "cancel", "message_id": "m1"}))
        frames += await frames_until_end(ws, timeout_s=5)
    assert calls_of(frames)[-1]["status"] == "failed"
    end = frames[-1]
    assert end["finish_reason"] == "cancelled"
    assert end["tool_calls"][0]["error"] == "stopped (cancelled) while the tool ran"
    assert len([s for s in await fake_streams(system) if s["prompt"] == content]) == 1


async def test_a_failing_tool_is_reported_and_the_model_answers_anyway(system: System) -> None:
    async with await Client.dev(system.gateway_url) as client:
        sid = await client.create_session()
        async with client.session(sid) as session:
            frames = [f async for f in session.ask("[fake tool=lookup tool_fail=1 tokens=2]")]
    failed = [f for f in frames if isinstance(f, StreamToolCallFrame)][-1]
    assert failed.status == "failed"
    assert failed.error.startswith("the tool answered HTTP 500")
    end = frames[-1]
    assert isinstance(end, StreamEndFrame)
    assert (end.finish_reason, end.text) == ("stop", "".join(reply_pieces(2)))


async def test_a_killed_worker_never_makes_a_side_effecting_tool_run_twice(
    system: System, http: httpx.AsyncClient
) -> None:
    alice = await dev_user(http)
    sid = await new_session(http, alice)
    async with await connect(system.ws_url, sid, alice) as ws:
        assert (await next_frame(ws))["type"] == "ready"
        await ws.send(say("k1", "[fake tool=order tokens=150 delay_ms=15]"))
        frames: list[dict[str, Any]] = []
        while sum(f["type"] == "stream_token" for f in frames) < 10:
            frames.append(await next_frame(ws))
        system.add_worker(**worker_env(system))  # to answer again
        victim = await streaming_worker(system, 150)
        os.kill(victim.popen.pid, signal.SIGKILL)
        frames += await frames_until_end(ws, timeout_s=30)
    starts = [f for f in frames if f["type"] == "stream_start"]
    assert [s["attempt"] for s in starts] == [1, 2]
    done = [c for c in calls_of(frames) if c["status"] == "done"]
    assert [c["attempt"] for c in done] == [1, 2]
    assert done[0]["call_id"] != done[1]["call_id"]  # each generation draws its own id
    assert done[0]["result"] == done[1]["result"]  # the second was given the first's result
    ordered = [c for c in await fake_tool_calls(system) if c["message_id"] == "k1"]
    assert len(ordered) == 1  # the order was placed once
    assert ordered[0]["idempotency_key"].startswith(f"{sid}:k1:1.0:")
    assert frames[-1]["tool_calls"][0]["status"] == "done"
    await asyncio.sleep(0)
