"""The context a reply sees, through the responder on a real Redis-compatible server: the turns
read with the reply's `begin`, the exchange appended by its `finish`, once."""

import json
import uuid
from typing import Any

import httpx2
import pytest
from redis.asyncio import Redis

from llm_worker.cancels import CancelRegistry
from llm_worker.context import ContextStore
from llm_worker.coordination import Coordinator
from llm_worker.delivery import Delivery
from llm_worker.prompts import SystemPrompts
from llm_worker.responder import Responder
from llm_worker.settings import WorkerSettings
from shared import keys, rpc
from shared.events import UserMessage
from support.llm_mock import RecordingPublisher, chunk, model_over, sse, usage

pytestmark = pytest.mark.real
REPLY = sse(chunk("Hi"), chunk("!"), chunk(None, "stop"), usage(3, 2))


def responder(redis: Redis, prompts_seen: list[list[dict[str, Any]]]) -> Responder:
    def handle(request: httpx2.Request) -> httpx2.Response:
        prompts_seen.append(json.loads(request.content)["messages"])
        return httpx2.Response(200, content=REPLY, headers={"content-type": "text/event-stream"})

    async def no_history(request: rpc.HistoryRequest) -> rpc.HistoryPage:
        raise AssertionError("a fresh session needs no history")

    async def no_session(session_id: str) -> str | None:
        raise AssertionError("the prompt is in Redis")

    settings = WorkerSettings(openai_base_url="http://llm/v1")
    return Responder(
        settings,
        model_over(handle),
        RecordingPublisher,
        Coordinator(redis, fence_ttl_s=60),
        ContextStore(redis, no_history, max_turns=10, ttl_s=60),
        SystemPrompts(redis, no_session, default=settings.system_prompt),
        CancelRegistry(),
    )


def message(sid: str, mid: str, content: str) -> UserMessage:
    return UserMessage(session_id=sid, message_id=mid, participant="u", content=content)


async def test_the_next_reply_sees_the_exchange_before_it_once(redis: Redis) -> None:
    sid = uuid.uuid4().hex
    await redis.set(keys.fresh_session(sid), 1)  # as the gateway marks a new session
    await redis.set(keys.session_prompt(sid), "Be brief.")
    prompts: list[list[dict[str, Any]]] = []
    worker = responder(redis, prompts)
    assert await worker.respond(Delivery(message(sid, "m1", "first?"), 1, 1))
    assert await worker.respond(Delivery(message(sid, "m1", "first?"), 2, 1))  # redelivered
    assert await worker.respond(Delivery(message(sid, "m2", "second?"), 1, 2))
    assert len(prompts) == 2  # the answered message was only acked again
    assert prompts[1] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "first?"},
        {"role": "assistant", "content": "Hi!"},
        {"role": "user", "content": "second?"},
    ]
    stored = [json.loads(t)["id"] for t in await redis.lrange(f"tw:ctx:{sid}", 0, -1)]
    assert stored == ["m1", "m1/reply", "m2", "m2/reply"]
    assert not await redis.exists(keys.fresh_session(sid))
