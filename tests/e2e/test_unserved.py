"""A message for a model no worker serves, with real processes: its sender is told it waits,
and when no worker came within the gateway's timeout, its reply ends with `stream_error`
`no_worker` on every client and in history; a worker that starts later acks it without
answering, and answers the next message."""

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from support.client import (
    User,
    connect,
    dev_user,
    frames_until_end,
    history,
    new_session,
    next_frame,
)
from support.system import System, system_with_own_nats

pytestmark = [pytest.mark.real, pytest.mark.e2e]
MODEL = f"lone-{uuid.uuid4().hex[:8]}"
"""A model of this module's own: no other test's worker serves it."""


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[System]:
    """No worker at first; a message waits 2 s for one."""
    with system_with_own_nats(
        tmp_path_factory.mktemp("unserved"),
        redis_url=redis_url,
        workers=0,
        common_env={"TOKENWIRE_MODELS": json.dumps([{"id": MODEL, "name": "tokenwire-fake"}])},
        gateway_env={"TOKENWIRE_UNSERVED_TIMEOUT_S": "2"},
    ) as running:
        yield running


async def workers_of(http: httpx.AsyncClient, user: User, expected: int) -> None:
    """Wait until the gateway has read that `expected` workers serve the model."""
    for _ in range(150):
        (model,) = (await http.get("/v1/models", headers=user.auth)).json()["models"]
        if model["workers"] == expected:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the gateway did not see {expected} workers of {MODEL}")


async def test_a_message_no_worker_takes_ends_with_no_worker_and_stays_unanswered(
    system: System, http: httpx.AsyncClient
) -> None:
    alice, bob = await dev_user(http), await dev_user(http)
    sid = await new_session(http, alice)
    await http.post(
        f"/v1/sessions/{sid}/members", headers=alice.auth, json={"user_id": bob.user_id}
    )
    await workers_of(http, alice, 0)
    async with (
        await connect(system.ws_url, sid, alice) as ws,
        await connect(system.ws_url, sid, bob) as other,
    ):
        assert (await next_frame(ws))["type"] == "ready"
        assert (await next_frame(other))["type"] == "ready"
        unserved = f"[fake tokens=3] {uuid.uuid4().hex}"
        await ws.send(json.dumps({"type": "message", "message_id": "m1", "content": unserved}))
        frames = await frames_until_end(ws, notices=True)
        seen = await frames_until_end(other, notices=True)
    waiting = next(f for f in frames if f["type"] == "waiting")
    assert waiting == {
        "type": "waiting",
        "message_id": "m1",
        "model": MODEL,
        "give_up_after_s": 2.0,
        "detail": f"no worker serves the model {MODEL} now: the message waits for one"
        " for up to 2 s",
    }
    assert not any(f["type"] == "waiting" for f in seen)  # the sender's alone
    for got in (frames, seen):
        end: dict[str, Any] = got[-1]
        assert (end["type"], end["message_id"], end["code"]) == ("stream_error", "m1", "no_worker")
        assert end["retryable"]
        assert (
            end["message"]
            == f"no worker took this message within 2 s: none serves the model {MODEL}"
        )
        assert "/model" in end["solutions"][0]
        assert not any(f["type"] == "stream_start" for f in got)

    told = await http.post(
        f"/v1/sessions/{sid}/messages",
        headers=alice.auth,
        json={"message_id": "m2", "content": f"[fake tokens=3] {uuid.uuid4().hex}"},
    )
    assert told.status_code == 202
    assert told.json()["waiting"].startswith(f"no worker serves the model {MODEL} now")

    system.add_worker()
    await workers_of(http, alice, 1)
    answered = f"[fake tokens=3] {uuid.uuid4().hex}"
    async with await connect(system.ws_url, sid, alice) as ws:
        assert (await next_frame(ws))["type"] == "ready"
        await ws.send(json.dumps({"type": "message", "message_id": "m3", "content": answered}))
        frames = await frames_until_end(ws, notices=True)
    assert not any(f["type"] == "waiting" for f in frames)
    assert (frames[-1]["type"], frames[-1]["message_id"]) == ("stream_end", "m3")

    async with httpx.AsyncClient(base_url=system.llm_url) as llm:
        prompts = [s["prompt"] for s in (await llm.get("/v1/_fake/streams")).json()]
    assert unserved not in prompts  # given up: the worker only acked it
    assert answered in prompts
    messages = await history(http, sid, alice, 6)  # m1, m2, m3 and their replies
    replies = {m["message_id"]: m for m in messages if m["role"] == "assistant"}
    assert replies["m1/reply"]["status"] == "error"
    assert replies["m1/reply"]["content"].startswith("[no_worker] no worker took this message")
    assert replies["m3/reply"]["status"] == "complete"
