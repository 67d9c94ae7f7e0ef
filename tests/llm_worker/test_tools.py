"""Tool calls in the worker: deltas read from the stream, the tools' configuration checked,
a reply that calls a tool and goes on (usage of every step counted), the step limit, cancel
during a tool, and at most one run of a side-effecting call per call — on a real Valkey."""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from redis.asyncio import Redis

from llm_worker.attempt import ReplyJob
from llm_worker.cancels import StopSignal
from llm_worker.completions import ToolCallDelta, pieces_from_chunk
from llm_worker.replies import Streaming, generate_reply
from llm_worker.tokens import TokenCounter
from llm_worker.tool_runs import INTERRUPTED, ToolRunner
from llm_worker.tool_steps import Asked, Ran, StepCalls, arguments_of, next_messages, run_key
from llm_worker.tools import Toolbox, ToolSpec
from shared.events import ReplyEnd, ReplyToolCall, UserMessage
from support.llm_mock import RecordingPublisher, chunk, model_over, sse, usage

COUNTER = TokenCounter("gpt-4o-mini")
LOOKUP = ToolSpec(
    name="lookup",
    description="Find things.",
    parameters={
        "type": "object",
        "properties": {"query": {"type": "string"}},
        "required": ["query"],
    },
    url="http://tools/lookup",  # type: ignore[arg-type]
)


def tool_chunk(
    index: int, call_id: str = "", name: str = "", arguments: str = ""
) -> dict[str, Any]:
    call: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if call_id:
        call |= {"id": call_id, "type": "function"}
        call["function"]["name"] = name
    body = chunk()
    body["choices"][0]["delta"] = {"tool_calls": [call]}
    return body


def asks_lookup(call_id: str = "call_a", query: str = "tides") -> bytes:
    arguments = json.dumps({"query": query})
    return sse(
        tool_chunk(0, call_id, "lookup"),
        tool_chunk(0, arguments=arguments[:7]),
        tool_chunk(0, arguments=arguments[7:]),
        chunk(None, "tool_calls"),
        usage(20, 6),
    )


class Model:
    """Answers each request with the next body; keeps the requests."""

    def __init__(self, *bodies: bytes) -> None:
        self.bodies = list(bodies)
        self.requests: list[dict[str, Any]] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(json.loads(request.content))
        body = self.bodies.pop(0) if len(self.bodies) > 1 else self.bodies[0]
        return httpx2.Response(200, content=body, headers={"content-type": "text/event-stream"})


class Tools:
    """The tools' endpoint: counts calls; answers after `delay_s`, or with `status`."""

    def __init__(self, delay_s: float = 0.0, status: int = 200) -> None:
        self.calls: list[httpx2.Request] = []
        self.delay_s, self.status = delay_s, status
        self.started = asyncio.Event()

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.calls.append(request)
        self.started.set()
        await asyncio.sleep(self.delay_s)
        return httpx2.Response(self.status, json={"tide": "high at 6"})


def runner(redis: Redis, tools: Tools, *specs: ToolSpec, max_steps: int = 4) -> ToolRunner:
    http = httpx2.AsyncClient(transport=httpx2.MockTransport(tools))
    box = Toolbox(list(specs or [LOOKUP]))
    return ToolRunner(box, redis, timeout_s=5, max_steps=max_steps, http=http)


def job() -> ReplyJob:
    message = UserMessage(
        session_id=uuid.uuid4().hex, message_id="m1", participant="u1", content="tides?"
    )
    return ReplyJob(message, 1, [{"role": "user", "content": "tides?"}], "m", 100)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


def test_tool_call_deltas_are_read_from_the_stream() -> None:
    assert pieces_from_chunk(tool_chunk(0, "call_a", "lookup")) == [
        ToolCallDelta(0, "call_a", "lookup", "")
    ]
    assert pieces_from_chunk(tool_chunk(1, arguments='{"q')) == [ToolCallDelta(1, "", "", '{"q')]
    calls = StepCalls(step=1)
    for delta in (ToolCallDelta(0, "", "lookup", '{"query":'), ToolCallDelta(0, "", "", '"x"}')):
        calls.add(delta)
    [asked] = calls.asked()
    assert (asked.call_id, asked.name, arguments_of(asked)) == (
        "call_1_0",
        "lookup",
        {"query": "x"},
    )
    assert arguments_of(Asked(0, "c", "lookup", "{nope")) == "the arguments are not valid JSON"


def test_tools_are_checked_when_they_load() -> None:
    with pytest.raises(ValueError, match="no JSON Schema"):
        ToolSpec(name="t", url="http://x", parameters={"type": "object", "required": 3})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="schema of an object"):
        ToolSpec(name="t", url="http://x", parameters={"type": "string"})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must differ"):
        Toolbox([LOOKUP, LOOKUP])
    assert Toolbox([LOOKUP]).offered()[0]["function"]["name"] == "lookup"
    assert not Toolbox([])


def test_a_call_is_known_by_its_place_and_arguments_not_by_the_models_id() -> None:
    message = job().message
    first = run_key(message, 1, Asked(0, "call_a", "lookup"), {"query": "x", "n": 1})
    again = run_key(message, 1, Asked(0, "call_b", "lookup"), {"n": 1, "query": "x"})
    assert first == again
    assert first != run_key(message, 1, Asked(0, "call_b", "lookup"), {"query": "y"})
    assert first != run_key(message, 2, Asked(0, "call_a", "lookup"), {"query": "x", "n": 1})


@pytest.mark.real
async def test_a_reply_calls_a_tool_and_goes_on_with_every_steps_usage(redis: Redis) -> None:
    model = Model(
        asks_lookup(), sse(chunk("High"), chunk(" at 6."), chunk(None, "stop"), usage(40, 3))
    )
    tools, publisher = Tools(), RecordingPublisher()
    streaming = Streaming(model_over(model), publisher, COUNTER, tools=runner(redis, tools))
    end = await generate_reply(job(), streaming, StopSignal())
    assert isinstance(end, ReplyEnd)
    assert end.text == "High at 6."
    assert (end.usage.prompt_tokens, end.usage.completion_tokens) == (60, 9)  # both calls
    [called] = end.tool_calls
    assert (called.call_id, called.name, called.status, called.step) == (
        "call_a",
        "lookup",
        "done",
        1,
    )
    assert json.loads(called.arguments) == {"query": "tides"}
    assert json.loads(called.result) == {"tide": "high at 6"}
    events = [e for e in publisher.events if isinstance(e, ReplyToolCall)]
    assert [e.status for e in events] == ["arguments"] * 3 + ["running", "done"]
    assert "".join(e.arguments for e in events) == '{"query": "tides"}'
    kinds = [type(e).__name__ for e in publisher.events]
    assert kinds.index("ReplyToken") > kinds.index("ReplyToolCall")
    first, second = model.requests
    assert first["tools"][0]["function"]["name"] == "lookup"
    asking, answer = second["messages"][-2:]
    assert asking["tool_calls"][0]["id"] == "call_a"
    assert (answer["role"], answer["tool_call_id"]) == ("tool", "call_a")
    assert json.loads(answer["content"]) == {"tide": "high at 6"}
    assert json.loads(tools.calls[0].content)["arguments"] == {"query": "tides"}


@pytest.mark.real
async def test_the_call_after_the_last_step_is_offered_no_tools(redis: Redis) -> None:
    model = Model(asks_lookup(), asks_lookup(), sse(chunk("Enough."), chunk(None, "stop")))
    streaming = Streaming(
        model_over(model), RecordingPublisher(), COUNTER, tools=runner(redis, Tools(), max_steps=2)
    )
    end = await generate_reply(job(), streaming, StopSignal())
    assert isinstance(end, ReplyEnd)
    assert end.text == "Enough."
    assert ["tools" in r for r in model.requests] == [True, True, False]
    assert [c.step for c in end.tool_calls] == [1, 2]


@pytest.mark.real
async def test_a_failing_tool_is_told_to_the_model_and_the_reply_goes_on(redis: Redis) -> None:
    model = Model(asks_lookup(), sse(chunk("Sorry."), chunk(None, "stop")))
    tools = Tools(status=503)
    streaming = Streaming(
        model_over(model), RecordingPublisher(), COUNTER, tools=runner(redis, tools)
    )
    end = await generate_reply(job(), streaming, StopSignal())
    assert isinstance(end, ReplyEnd)
    assert end.text == "Sorry."
    [failed] = end.tool_calls
    assert failed.status == "failed"
    assert failed.error.startswith("the tool answered HTTP 503")
    assert json.loads(model.requests[1]["messages"][-1]["content"])["error"] == failed.error


@pytest.mark.real
async def test_cancel_stops_a_running_tool(redis: Redis) -> None:
    model = Model(asks_lookup(), sse(chunk("never"), chunk(None, "stop")))
    tools, publisher, stop = Tools(delay_s=30), RecordingPublisher(), StopSignal()
    streaming = Streaming(model_over(model), publisher, COUNTER, tools=runner(redis, tools))
    reply = asyncio.create_task(generate_reply(job(), streaming, stop))
    await asyncio.wait_for(tools.started.wait(), 5)
    stop.set("cancelled")
    end = await asyncio.wait_for(reply, 5)
    assert isinstance(end, ReplyEnd)
    assert end.finish_reason == "cancelled"
    [stopped] = end.tool_calls
    assert (stopped.status, stopped.error) == ("failed", "stopped (cancelled) while the tool ran")
    assert len(model.requests) == 1  # no step after it
    last_call = [e for e in publisher.events if isinstance(e, ReplyToolCall)][-1]
    assert last_call.status == "failed"


@pytest.mark.real
async def test_a_side_effecting_call_runs_once_across_attempts(redis: Redis) -> None:
    tools = Tools()
    run = runner(redis, tools)
    message = job().message
    first = await run.run(message, 1, Asked(0, "call_a", "lookup", '{"query": "x"}'))
    # A later attempt's model asks for the same call under an id of its own.
    again = await run.run(message, 1, Asked(0, "call_b", "lookup", '{"query":"x"}'))
    assert first == again
    assert first.ok
    assert len(tools.calls) == 1
    key = tools.calls[0].headers["idempotency-key"]
    assert key == run_key(message, 1, Asked(0, "call_a", "lookup"), {"query": "x"})
    # An attempt that died while the tool ran leaves its mark: the call is not run again.
    await redis.set(
        f"tw:tool:{run_key(message, 1, Asked(1, 'c', 'lookup'), {'query': 'y'})}", "running"
    )
    interrupted = await run.run(message, 1, Asked(1, "call_c", "lookup", '{"query": "y"}'))
    assert (interrupted.ok, interrupted.error) == (False, INTERRUPTED)
    assert len(tools.calls) == 1


@pytest.mark.real
async def test_lookups_run_again_and_bad_calls_never_reach_the_tool(redis: Redis) -> None:
    tools = Tools()
    lookup = LOOKUP.model_copy(update={"side_effects": False})
    run = runner(redis, tools, lookup)
    message = job().message
    for _ in range(2):
        assert (await run.run(message, 1, Asked(0, "c", "lookup", '{"query": "x"}'))).ok
    assert len(tools.calls) == 2
    refused = [
        await run.run(message, 1, Asked(0, "c", "lookup", "{nope")),
        await run.run(message, 1, Asked(0, "c", "lookup", '{"query": 3}')),
        await run.run(message, 1, Asked(0, "c", "missing", "{}")),
    ]
    assert [r.error.split(":")[0] for r in refused] == [
        "the arguments are not valid JSON",
        "the arguments do not fit the tool's parameters",
        "there is no tool named 'missing'",
    ]
    assert len(tools.calls) == 2


def test_the_next_prompt_holds_the_request_and_each_result() -> None:
    calls = [Asked(0, "a", "lookup", "{}"), Asked(1, "b", "lookup", "{}")]
    messages = next_messages("Checking.", calls, [Ran(True, "one"), Ran.failed("down")])
    assert messages[0]["content"] == "Checking."
    assert [m.get("tool_call_id") for m in messages[1:]] == ["a", "b"]
    assert json.loads(messages[2]["content"]) == {"error": "down"}


@pytest.mark.real
async def test_argument_deltas_are_joined_within_the_window_like_tokens(redis: Redis) -> None:
    pieces = ['{"q', 'uery"', ': "ti', 'des"}']
    asking = sse(
        tool_chunk(0, "call_a", "lookup"),
        *(tool_chunk(0, arguments=piece) for piece in pieces),
        chunk(None, "tool_calls"),
    )
    model = Model(asking, sse(chunk("Done."), chunk(None, "stop")))
    publisher = RecordingPublisher()
    streaming = Streaming(
        model_over(model), publisher, COUNTER, coalesce_s=10, tools=runner(redis, Tools())
    )
    end = await generate_reply(job(), streaming, StopSignal())
    assert isinstance(end, ReplyEnd)
    events = [e for e in publisher.events if isinstance(e, ReplyToolCall)]
    # Named at once; the first delta after a quiet spell at once; the rest joined, flushed
    # before the call runs.
    assert [(e.status, e.arguments) for e in events] == [
        ("arguments", ""),
        ("arguments", '{"q'),
        ("arguments", 'uery": "tides"}'),  # three deltas, one event
        ("running", ""),
        ("done", ""),
    ]
    assert json.loads(end.tool_calls[0].arguments) == {"query": "tides"}


@pytest.mark.real
async def test_calls_asked_at_once_run_at_once_and_end_as_each_answers(redis: Redis) -> None:
    asking = sse(
        tool_chunk(0, "call_slow", "lookup", '{"query": "slow"}'),
        tool_chunk(1, "call_fast", "lookup", '{"query": "fast"}'),
        chunk(None, "tool_calls"),
    )
    model = Model(asking, sse(chunk("Both."), chunk(None, "stop")))

    async def answer(request: httpx2.Request) -> httpx2.Response:
        query = json.loads(request.content)["arguments"]["query"]
        await asyncio.sleep(0.5 if query == "slow" else 0)
        return httpx2.Response(200, json={"query": query})

    http = httpx2.AsyncClient(transport=httpx2.MockTransport(answer))
    run = ToolRunner(Toolbox([LOOKUP]), redis, timeout_s=5, max_steps=4, http=http)
    publisher = RecordingPublisher()
    end = await generate_reply(
        job(), Streaming(model_over(model), publisher, COUNTER, tools=run), StopSignal()
    )
    assert isinstance(end, ReplyEnd)
    events = [e for e in publisher.events if isinstance(e, ReplyToolCall)]
    ran = [(e.call_id, e.status) for e in events if e.status in ("running", "done")]
    assert ran == [  # both start, then the fast one ends first
        ("call_slow", "running"),
        ("call_fast", "running"),
        ("call_fast", "done"),
        ("call_slow", "done"),
    ]
    assert [c.call_id for c in end.tool_calls] == ["call_slow", "call_fast"]  # as asked
    answers = [m for m in model.requests[1]["messages"] if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in answers] == ["call_slow", "call_fast"]
