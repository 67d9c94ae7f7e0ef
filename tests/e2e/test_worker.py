"""Workers with real processes: cancel that stops the model, retries, SIGKILL and SIGSTOP of a
streaming worker, sharing a load, second-message policies, budgets and drain.

The ack wait is 2 s here, so that a lost worker's message moves on quickly.
"""

import asyncio
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection

from gateway.auth import mint_token
from support.client import User, connect, dev_user, frames_until_end, history, next_frame
from support.fake_model import fake_streams, streaming_worker
from support.system import Process, System, system_with_own_nats

pytestmark = [pytest.mark.real, pytest.mark.e2e]
BUDGET = 600


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[System]:
    workdir = tmp_path_factory.mktemp("workers")
    with system_with_own_nats(
        workdir,
        redis_url=redis_url,
        workers=2,
        common_env={"TOKENWIRE_WORKER_ACK_WAIT_S": "2"},
        worker_env={
            "TOKENWIRE_LLM_MAX_RETRIES": "2",
            "TOKENWIRE_DAILY_TOKEN_BUDGET": str(BUDGET),
            "TOKENWIRE_PRICES": '{"tokenwire-fake": {"input": 1.0, "output": 2.0}}',
        },
    ) as running:
        yield running


async def session(http: httpx.AsyncClient, policy: str = "queue") -> tuple[str, User]:
    user = await dev_user(http)
    # titled: the model is asked for no title, so every model call counted is a reply's
    body = {"policy": policy, "title": "worker test"}
    made = await http.post("/v1/sessions", headers=user.auth, json=body)
    return made.json()["session_id"], user


def say(message_id: str, content: str) -> str:
    return json.dumps({"type": "message", "message_id": message_id, "content": content})


async def exit_code(process: Process, timeout_s: float) -> int:
    """Wait for `process` to exit; if it does not, fail with its asyncio tasks (SIGUSR1)."""
    try:
        return await asyncio.to_thread(process.popen.wait, timeout_s)
    except subprocess.TimeoutExpired:
        process.popen.send_signal(signal.SIGUSR1)
        await asyncio.sleep(1)
        raise AssertionError(f"{process.name} did not exit:\n{process.tail(8000)}") from None


async def tokens(ws: ClientConnection, count: int) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    while sum(f["type"] == "stream_token" for f in frames) < count:
        frames.append(await next_frame(ws))
    return frames


async def test_cancel_stops_the_model_within_a_second(
    system: System, http: httpx.AsyncClient
) -> None:
    sid, alice = await session(http)
    async with await connect(system.ws_url, sid, alice) as ws:
        await next_frame(ws)
        await ws.send(say("c1", "[fake tokens=501 delay_ms=10]"))
        before = await tokens(ws, 5)
        cancelled_at = time.time()
        await ws.send(json.dumps({"type": "cancel", "message_id": "c1"}))
        rest = await frames_until_end(ws)
    end = rest[-1]
    assert (end["type"], end["finish_reason"]) == ("stream_end", "cancelled")
    streamed = "".join(f["text"] for f in before + rest if f["type"] == "stream_token")
    assert end["text"] == streamed
    assert end["usage"]["estimated"]
    assert end["usage"]["completion_tokens"] > 0
    record = next(r for r in await fake_streams(system) if r["planned"] == 501)
    assert record["closed_early"]
    assert record["sent"] < 501
    assert record["ended"] - cancelled_at < 1.0
    messages = await history(http, sid, alice, 2)
    assert (messages[0]["status"], messages[0]["content"]) == ("cancelled", end["text"])


async def test_a_429_before_the_first_token_is_retried(
    system: System, http: httpx.AsyncClient
) -> None:
    sid, alice = await session(http)
    async with await connect(system.ws_url, sid, alice) as ws:
        await next_frame(ws)
        await ws.send(say("r1", f"{uuid.uuid4().hex} [fake fail_first=1 tokens=3]"))
        frames = await frames_until_end(ws)
    assert frames[-1]["type"] == "stream_end"
    assert frames[-1]["finish_reason"] == "stop"
    assert frames[-1]["cost_usd"] == pytest.approx(
        (frames[-1]["usage"]["prompt_tokens"] + 2 * 3) / 1_000_000
    )


async def test_a_killed_worker_s_reply_is_answered_by_another_exactly_once(
    system: System, http: httpx.AsyncClient
) -> None:
    sid, alice = await session(http)
    async with await connect(system.ws_url, sid, alice) as ws:
        await next_frame(ws)
        await ws.send(say("k1", "[fake tokens=152 delay_ms=15]"))
        before = await tokens(ws, 10)
        victim = await streaming_worker(system, 152)
        os.kill(victim.popen.pid, signal.SIGKILL)
        after = await frames_until_end(ws, timeout_s=30)
    system.add_worker()
    starts = [f for f in before + after if f["type"] == "stream_start"]
    assert [s["attempt"] for s in starts] == [1, 2]
    second = after[after.index(starts[1]) :]
    assert second[-1]["type"] == "stream_end"
    assert "".join(f["text"] for f in second if f["type"] == "stream_token") == second[-1]["text"]
    assert len(second[-1]["text"].split()) == 152
    messages = await history(http, sid, alice, 2)
    replies = [m for m in messages if m["role"] == "assistant"]
    assert [(r["attempt"], r["status"]) for r in replies] == [(2, "complete")]
    # Both model calls are billed: the lost one estimated from what it had published.
    billed = await billed_once(http, alice, calls=2)
    assert billed["estimated_calls"] == 1
    served = sum(r["sent"] for r in await fake_streams(system) if r["planned"] == 152)
    answered = second[-1]["usage"]["completion_tokens"]
    assert answered == 152
    assert 0 <= served - billed["completion_tokens"] <= 8  # the lost one's last window
    assert billed["prompt_tokens"] == 2 * second[-1]["usage"]["prompt_tokens"]


async def billed_once(http: httpx.AsyncClient, user: User, *, calls: int) -> dict[str, Any]:
    """The user's billed totals once `calls` model calls are recorded."""
    for _ in range(100):
        billed: dict[str, Any] = (await http.get("/v1/usage", headers=user.auth)).json()["billed"]
        if billed["calls"] >= calls:
            return billed
        await asyncio.sleep(0.1)
    raise AssertionError(f"billed {billed}, not {calls} calls")


async def test_a_frozen_worker_is_fenced_off_when_it_wakes(
    system: System, http: httpx.AsyncClient
) -> None:
    sid, alice = await session(http)
    async with await connect(system.ws_url, sid, alice) as ws:
        await next_frame(ws)
        await ws.send(say("f1", "[fake tokens=153 delay_ms=20]"))
        before = await tokens(ws, 5)
        frozen = await streaming_worker(system, 153)
        os.kill(frozen.popen.pid, signal.SIGSTOP)
        try:
            after: list[dict[str, Any]] = []
            while not any(f["type"] == "stream_start" for f in after):
                after.append(await next_frame(ws, timeout_s=15))
        finally:
            os.kill(frozen.popen.pid, signal.SIGCONT)  # it wakes while attempt 2 streams
        after += await frames_until_end(ws, timeout_s=30)
    second = after[next(i for i, f in enumerate(after) if f["type"] == "stream_start") :]
    # Attempt 2 may go to the frozen worker's pending pull request and time out again.
    attempt = second[0]["attempt"]
    assert attempt >= 2
    text = "".join(f["text"] for f in second if f["type"] == "stream_token")
    assert second[-1]["type"] == "stream_end"
    assert text == second[-1]["text"]
    assert len(text.split()) == 153
    assert before
    await asyncio.sleep(1)  # let the woken worker notice it lost the reply
    messages = await history(http, sid, alice, 2)
    assert [(m["attempt"], m["status"]) for m in messages if m["role"] == "assistant"] == [
        (attempt, "complete")
    ]
    # Every attempt that called the model is billed (the frozen one by its own worker once
    # it woke, or estimated by the answering attempt before that).
    started = {f["attempt"] for f in before + after if f["type"] == "stream_start"}
    billed = await billed_once(http, alice, calls=len(started))
    assert billed["calls"] == len(started)


async def test_two_workers_share_fifty_concurrent_replies(
    system: System, http: httpx.AsyncClient
) -> None:
    sessions = [await session(http) for _ in range(50)]
    sockets = [await connect(system.ws_url, sid, user) for sid, user in sessions]
    try:
        for ws in sockets:
            await next_frame(ws)
        for i, ws in enumerate(sockets):
            await ws.send(say(f"load{i}", "[fake tokens=23 delay_ms=20]"))
        ends = await asyncio.gather(*(frames_until_end(ws, timeout_s=60) for ws in sockets))
    finally:
        for ws in sockets:
            await ws.close()
    assert all(frames[-1]["type"] == "stream_end" for frames in ends)
    assert all(len(frames[-1]["text"].split()) == 23 for frames in ends)
    workers = {r["worker"] for r in await fake_streams(system) if r["planned"] == 23}
    assert len(workers) == 2


async def test_queue_answers_one_message_after_the_other(
    system: System, http: httpx.AsyncClient
) -> None:
    sid, alice = await session(http, "queue")
    async with await connect(system.ws_url, sid, alice) as ws:
        await next_frame(ws)
        await ws.send(say("q1", "[fake tokens=30 delay_ms=10]"))
        await ws.send(say("q2", "[fake tokens=5 delay_ms=0]"))
        frames = await frames_until_end(ws)
        frames += await frames_until_end(ws)
    order = [(f["type"], f["message_id"]) for f in frames if f["type"] != "stream_token"]
    # The gateway's echo of q2 and the worker's start of q1 race; the replies must not.
    replies = [event for event in order if event[0] != "message"]
    assert replies == [
        ("stream_start", "q1"),
        ("stream_end", "q1"),
        ("stream_start", "q2"),
        ("stream_end", "q2"),
    ]
    assert order[0] == ("message", "q1")
    assert order.index(("message", "q2")) < order.index(("stream_start", "q2"))


async def test_reject_refuses_a_message_while_a_reply_streams(
    system: System, http: httpx.AsyncClient
) -> None:
    sid, alice = await session(http, "reject")
    async with await connect(system.ws_url, sid, alice) as ws:
        await next_frame(ws)
        await ws.send(say("j1", "[fake tokens=40 delay_ms=20]"))
        await tokens(ws, 1)
        await ws.send(say("j2", "hello?"))
        refusal = await next_frame(ws)
        while refusal["type"] == "stream_token":
            refusal = await next_frame(ws)
        assert (refusal["type"], refusal["code"]) == ("error", "busy")
        assert (await frames_until_end(ws))[-1]["finish_reason"] == "stop"


async def test_interrupt_cancels_the_running_reply(system: System, http: httpx.AsyncClient) -> None:
    sid, alice = await session(http, "interrupt")
    async with await connect(system.ws_url, sid, alice) as ws:
        await next_frame(ws)
        await ws.send(say("i1", "[fake tokens=300 delay_ms=10]"))
        await tokens(ws, 3)
        await ws.send(say("i2", "[fake tokens=4 delay_ms=0]"))
        first = await frames_until_end(ws)
        second = await frames_until_end(ws)
    assert (first[-1]["message_id"], first[-1]["finish_reason"]) == ("i1", "cancelled")
    assert (second[-1]["message_id"], second[-1]["finish_reason"]) == ("i2", "stop")


async def test_parallel_streams_both_replies_at_once(
    system: System, http: httpx.AsyncClient
) -> None:
    sid, alice = await session(http, "parallel")
    async with await connect(system.ws_url, sid, alice) as ws:
        await next_frame(ws)
        await ws.send(say("p1", "[fake tokens=20 delay_ms=20]"))
        await ws.send(say("p2", "[fake tokens=20 delay_ms=20]"))
        frames = await frames_until_end(ws)
        frames += await frames_until_end(ws)
    kinds = [(f["type"], f["message_id"]) for f in frames if f["type"] != "stream_token"]
    first_end = next(i for i, k in enumerate(kinds) if k[0] == "stream_end")
    assert {k for k in kinds[:first_end] if k[0] == "stream_start"} == {
        ("stream_start", "p1"),
        ("stream_start", "p2"),
    }


async def test_the_daily_budget_stops_a_reply_and_refuses_the_next(
    system: System, http: httpx.AsyncClient
) -> None:
    sid, alice = await session(http)
    async with await connect(system.ws_url, sid, alice) as ws:
        await next_frame(ws)
        await ws.send(say("b1", "[fake tokens=1000 delay_ms=0]"))
        end = (await frames_until_end(ws))[-1]
        assert (end["type"], end["finish_reason"]) == ("stream_end", "budget")
        assert len(end["text"].split()) < 1000
        await ws.send(say("b2", "anything"))
        error = (await frames_until_end(ws))[-1]
    assert (error["type"], error["code"], error["retryable"]) == (
        "stream_error",
        "budget_exceeded",
        False,
    )


async def test_sigterm_lets_a_held_reply_finish(system: System, http: httpx.AsyncClient) -> None:
    sid, alice = await session(http)
    async with await connect(system.ws_url, sid, alice) as ws:
        await next_frame(ws)
        await ws.send(say("d1", "[fake tokens=154 delay_ms=10]"))
        before = await tokens(ws, 3)
        draining = await streaming_worker(system, 154)
        draining.popen.send_signal(signal.SIGTERM)
        after = await frames_until_end(ws, timeout_s=30)
    system.add_worker()
    assert [f["attempt"] for f in before + after if f["type"] == "stream_start"] == [1]
    assert after[-1]["finish_reason"] == "stop"
    assert len(after[-1]["text"].split()) == 154
    assert await exit_code(draining, 10) == 0


async def test_a_client_that_leaves_does_not_cancel_its_reply(
    system: System, http: httpx.AsyncClient
) -> None:
    sid, alice = await session(http)
    async with await connect(system.ws_url, sid, alice) as ws:
        await next_frame(ws)
        await ws.send(say("gone", "[fake tokens=40 delay_ms=10]"))
        await tokens(ws, 2)
    messages = await history(http, sid, alice, 2)
    assert (messages[0]["role"], messages[0]["status"]) == ("assistant", "complete")
    assert len(messages[0]["content"].split()) == 40


async def test_past_the_drain_timeout_a_reply_is_handed_to_another_worker(
    system: System, http: httpx.AsyncClient
) -> None:
    hasty = system.add_worker(TOKENWIRE_DRAIN_TIMEOUT_S="0.5")
    others = [
        p
        for p in system.processes
        if p.name.startswith("worker-") and p is not hasty and p.popen.poll() is None
    ]
    for worker in others:  # idle: they stop at once
        worker.popen.send_signal(signal.SIGTERM)
    for worker in others:
        await exit_code(worker, 15)
    sid, alice = await session(http)
    async with await connect(system.ws_url, sid, alice) as ws:
        await next_frame(ws)
        await ws.send(say("h1", "[fake tokens=155 delay_ms=20]"))
        before = await tokens(ws, 3)
        hasty.popen.send_signal(signal.SIGTERM)
        assert await exit_code(hasty, 10) == 0
        system.add_worker()
        system.add_worker()
        after = await frames_until_end(ws, timeout_s=30)
    starts = [f["attempt"] for f in before + after if f["type"] == "stream_start"]
    assert starts == [1, 2]
    assert len(after[-1]["text"].split()) == 155


async def test_usage_report_for_users_and_administrators(
    system: System, http: httpx.AsyncClient
) -> None:
    sid, alice = await session(http)
    async with await connect(system.ws_url, sid, alice) as ws:
        await next_frame(ws)
        for i in range(2):
            await ws.send(say(f"u{i}", "[fake tokens=5]"))
            await frames_until_end(ws)
    await history(http, sid, alice, 4)
    mine = (await http.get("/v1/usage", headers=alice.auth)).json()
    assert mine["totals"]["replies"] == 2
    assert mine["totals"]["completion_tokens"] == 10
    assert mine["totals"]["cost_usd"] > 0
    assert [g["key"] for g in mine["by_session"]] == [sid]
    assert [g["key"] for g in mine["by_model"]] == ["tokenwire-fake"]
    bob = await dev_user(http)
    assert (
        await http.get("/v1/usage", headers=bob.auth, params={"user_id": alice.user_id})
    ).status_code == 403
    assert (await http.get("/v1/usage", headers=bob.auth)).json()["totals"]["replies"] == 0
    admin = {"Authorization": "Bearer " + mint_token("ops", system.secret, 600, role="admin")}
    hers = (await http.get("/v1/usage", headers=admin, params={"user_id": alice.user_id})).json()
    assert hers["totals"] == mine["totals"]
    everyone = (await http.get("/v1/usage", headers=admin)).json()
    assert everyone["totals"]["replies"] > mine["totals"]["replies"]
