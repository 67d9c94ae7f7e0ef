"""Titles from the model: the worker asks for one after the first reply of an untitled session,
stores it with the call's usage (billed, and spent against budgets on a real Valkey), and
asks for none otherwise."""

import json
import uuid

import httpx2
import pytest
from redis.asyncio import Redis

from llm_worker.completions import MAX_ANSWER_BYTES
from llm_worker.coordination import Coordinator
from llm_worker.providers import Providers
from llm_worker.settings import WorkerSettings
from llm_worker.titling import Titler
from shared import keys, titles
from shared.events import ReplyEnd, SessionTitled, Usage, UserMessage
from support.llm_mock import RecordingPublisher, model_over

pytestmark = pytest.mark.real
SETTINGS = WorkerSettings.model_validate(
    {
        "models": [
            {"id": "big", "name": "big-model", "price": {"input": 1, "output": 2}},
            {"id": "small", "name": "small-model"},
        ],
        "openai_api_key": "sk-test",
    }
)


def first_message(sid: str, *, name_session: bool = True) -> UserMessage:
    return UserMessage(
        session_id=sid,
        message_id="m1",
        participant="alice",
        content="[fake tokens=3] Plan a trip to Lisbon\nfor two days",
        model="big",
        name_session=name_session,
    )


def ended(sid: str, finish: str = "stop") -> ReplyEnd:
    return ReplyEnd.model_validate(
        {
            "session_id": sid,
            "message_id": "m1",
            "attempt": 2,
            "model": "big-model",
            "text": "Day one: Alfama. Day two: Belém.",
            "finish_reason": finish,
            "usage": Usage(),
            "duration_ms": 1,
        }
    )


class Asked:
    """A model server that titles, noting each request."""

    def __init__(self, *, reports_usage: bool = True) -> None:
        self.requests: list[dict[str, object]] = []
        self._reports_usage = reports_usage

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(json.loads(request.content))
        answer: dict[str, object] = {
            "id": "c1",
            "object": "chat.completion",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": '"Lisbon in two days."'}}
            ],
        }
        if self._reports_usage:
            answer["usage"] = {"prompt_tokens": 120, "completion_tokens": 5, "total_tokens": 125}
        return httpx2.Response(200, json=answer)


async def titler(
    redis: Redis, asked: Asked, **options: object
) -> tuple[Titler, RecordingPublisher]:
    published = RecordingPublisher()
    providers = Providers.one_server(SETTINGS, model_over(asked))
    return Titler(providers, lambda: published, Coordinator(redis), **options), published  # type: ignore[arg-type]


async def test_the_first_exchange_is_titled_billed_and_spent(redis: Redis) -> None:
    sid, asked = uuid.uuid4().hex, Asked()
    made, published = await titler(redis, asked, model="small", session_cap=10_000)
    made.after(first_message(sid), 2, ended(sid))
    await made.drain(5)
    (event,) = published.events
    assert isinstance(event, SessionTitled)
    assert (event.title, event.replaces) == (
        "Lisbon in two days",
        "[fake tokens=3] Plan a trip to Lisbon",
    )
    assert (event.message_id, event.attempt, event.model) == ("m1", 2, "small-model")
    assert (event.usage.total_tokens, event.usage.estimated, event.cost_usd) == (125, False, None)
    assert event.requested_by == "alice"
    (request,) = asked.requests
    assert (request["model"], request["max_tokens"]) == ("small-model", titles.TITLE_MAX_TOKENS)
    assert "stream" not in request  # one short answer: not streamed
    assert request["messages"] == titles.title_request(
        first_message(sid).content, "Day one: Alfama. Day two: Belém."
    )
    assert await redis.get(keys.session_spend(sid)) == b"125"


async def test_a_server_without_usage_is_counted_and_priced(redis: Redis) -> None:
    sid = uuid.uuid4().hex
    made, published = await titler(redis, Asked(reports_usage=False))
    event = await made.title(first_message(sid), 1, "Day one: Alfama.")
    assert event is not None
    assert event.usage.estimated
    assert event.usage.completion_tokens > 0
    assert event.cost_usd is not None  # big-model has a price
    assert event.cost_usd > 0
    assert published.events == [event]
    assert not await redis.exists(keys.session_spend(sid))  # unmetered: nothing spent


async def test_a_title_is_spent_against_the_senders_own_budget(redis: Redis) -> None:
    sid = uuid.uuid4().hex
    made, _ = await titler(redis, Asked())  # no budget for the deployment
    claimed = first_message(sid).model_copy(update={"daily_budget": 50_000})  # a token's claim
    assert await made.title(claimed, 1, "Day one: Alfama.") is not None
    assert await redis.get(keys.session_spend(sid)) == b"125"  # as a reply's tokens would be


async def test_no_title_is_asked_for_but_after_an_answered_first_reply(redis: Redis) -> None:
    sid, asked = uuid.uuid4().hex, Asked()
    made, published = await titler(redis, asked)
    made.after(first_message(sid, name_session=False), 1, ended(sid))
    made.after(first_message(sid), 1, ended(sid, finish="cancelled"))
    await made.drain(5)
    assert asked.requests == []
    assert published.events == []


@pytest.mark.parametrize(
    "answer",
    [
        httpx2.Response(400, json={"error": {"message": "no"}}),
        httpx2.Response(200, content=b"data: not json"),
        httpx2.Response(200, json={"choices": []}),
        httpx2.Response(200, content=b"x" * (MAX_ANSWER_BYTES + 1)),
    ],
)
async def test_a_failing_model_leaves_the_first_messages_title(
    redis: Redis, answer: httpx2.Response
) -> None:
    published = RecordingPublisher()
    providers = Providers.one_server(SETTINGS, model_over(lambda _: answer))
    made = Titler(providers, lambda: published, Coordinator(redis))
    assert await made.title(first_message(uuid.uuid4().hex), 1, "answer") is None
    assert published.events == []
