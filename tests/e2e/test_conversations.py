"""Conversations with real processes: a catalogue of two models, each with a worker pool of
its own, and sessions that choose their model and parameters."""

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from support.client import User, connect, dev_user, frames_until_end, new_session, next_frame
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
