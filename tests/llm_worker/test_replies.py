"""One reply: start, numbered tokens, exactly one terminal event; stops that close upstream."""

import asyncio
import json
from typing import Any

import httpx2
import pytest

from llm_worker.attempt import ReplyJob
from llm_worker.cancels import StopSignal
from llm_worker.coordination import Limit
from llm_worker.publisher import Streamed
from llm_worker.replies import Streaming, TokensLost, Unwatched, generate_reply
from llm_worker.settings import Price
from llm_worker.tokens import TokenCounter
from shared.events import (
    ModelCall,
    ReplyEnd,
    ReplyError,
    ReplyStart,
    ReplyToken,
    UserMessage,
)
from support.llm_mock import (
    RecordingPublisher,
    SlowStream,
    chunk,
    model_over,
    slow_model,
    sse,
    streaming,
    usage,
)

MESSAGE = UserMessage(session_id="s1", message_id="m1", participant="u1", content="hi")
JOB = ReplyJob(
    message=MESSAGE, attempt=2, prompt=[{"role": "user", "content": "hi"}], model="m", max_tokens=10
)
COUNTER = TokenCounter("gpt-4o-mini")


async def test_reply_publishes_start_tokens_and_end(publisher: RecordingPublisher) -> None:
    client = model_over(
        streaming(sse(chunk("Hi"), chunk(" there"), chunk(None, "length"), usage(12, 2)))
    )
    prices = {"m": Price(input=1.0, output=2.0)}
    end = await generate_reply(JOB, Streaming(client, publisher, COUNTER, prices), StopSignal())
    start, *tokens, last = publisher.events
    assert start == ReplyStart(session_id="s1", message_id="m1", attempt=2, model="m")
    assert [(t.index, t.text, t.attempt) for t in tokens if isinstance(t, ReplyToken)] == [
        (0, "Hi", 2),
        (1, " there", 2),
    ]
    assert last is end
    assert isinstance(end, ReplyEnd)
    assert (end.text, end.finish_reason) == ("Hi there", "length")
    assert (end.usage.prompt_tokens, end.usage.completion_tokens, end.usage.estimated) == (
        12,
        2,
        False,
    )
    assert end.cost_usd == (12 * 1.0 + 2 * 2.0) / 1_000_000
    assert end.ttft_ms is not None
    assert end.duration_ms >= end.ttft_ms


async def test_usage_is_counted_when_the_provider_sends_none(
    publisher: RecordingPublisher,
) -> None:
    client = model_over(streaming(sse(chunk("hello world"), chunk(None, "stop"))))
    end = await generate_reply(JOB, Streaming(client, publisher, COUNTER), StopSignal())
    assert isinstance(end, ReplyEnd)
    assert end.usage.estimated
    assert end.usage.completion_tokens == 2  # o200k: "hello", " world"
    assert end.cost_usd is None  # no price for "m": unknown, not free


async def test_upstream_failure_ends_in_one_error_event(publisher: RecordingPublisher) -> None:
    def handle(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(429, json={"error": {"message": "slow down", "type": "x"}})

    end = await generate_reply(JOB, Streaming(model_over(handle), publisher, COUNTER), StopSignal())
    assert isinstance(end, ReplyError)
    assert (end.code, end.retryable) == ("upstream_rate_limited", True)
    assert [type(e) for e in publisher.events] == [ReplyStart, ReplyError]


async def test_cancel_closes_the_upstream_stream_and_keeps_the_partial_text(
    publisher: RecordingPublisher,
) -> None:
    body = SlowStream(deltas=100, delay_s=0.02, signal_after=3)
    stop = StopSignal()
    reply = asyncio.create_task(
        generate_reply(JOB, Streaming(slow_model(body), publisher, COUNTER), stop)
    )
    await asyncio.wait_for(body.reached.wait(), 2)
    stop.set("cancelled")
    end = await asyncio.wait_for(reply, 1)
    assert body.closed_early
    assert isinstance(end, ReplyEnd)
    assert end.finish_reason == "cancelled"
    assert end.text.startswith(" w0 w1 w2")
    assert end.usage.estimated
    assert end.usage.completion_tokens == COUNTER.count(end.text)


@pytest.mark.parametrize("limit", ["budget", "session_budget"])
async def test_a_spent_budget_ends_the_reply_with_finish_reason_budget(
    publisher: RecordingPublisher, limit: Limit
) -> None:
    body = SlowStream(deltas=100, delay_s=0.001)
    spent: list[int] = []

    class Metered(Unwatched):
        meters = True

        async def spend(self, tokens: int) -> Limit | None:
            spent.append(tokens)
            return None if sum(spent) < 5 else limit

    end = await generate_reply(
        JOB, Streaming(slow_model(body), publisher, COUNTER), StopSignal(), Metered()
    )
    assert isinstance(end, ReplyEnd)
    assert end.finish_reason == limit
    assert body.closed_early
    assert 5 <= sum(spent) <= 7


class NotOurs(Unwatched):
    async def still_ours(self) -> bool:
        return False


async def test_a_fenced_reply_publishes_no_terminal_event(publisher: RecordingPublisher) -> None:
    client = model_over(streaming(sse(chunk("Hi"), chunk(None, "stop"))))
    end = await generate_reply(JOB, Streaming(client, publisher, COUNTER), StopSignal(), NotOurs())
    assert end is None
    assert not any(isinstance(e, ReplyEnd | ReplyError) for e in publisher.events)


async def test_a_fenced_reply_still_records_its_model_call(publisher: RecordingPublisher) -> None:
    client = model_over(streaming(sse(chunk("Hello"), chunk(" world"), chunk(None, "stop"))))
    prices = {"m": Price(input=1.0, output=2.0)}
    streaming_ = Streaming(client, publisher, COUNTER, prices)
    assert await generate_reply(JOB, streaming_, StopSignal(), NotOurs()) is None
    [call] = [e for e in publisher.events if isinstance(e, ModelCall)]
    assert (call.attempt, call.outcome, call.requested_by) == (2, "superseded", "u1")
    assert call.usage.completion_tokens == 2
    assert call.usage.prompt_tokens > 0
    assert call.cost_usd is not None


class BreaksAfter(httpx2.AsyncByteStream):
    """Two deltas, then the connection breaks."""

    async def __aiter__(self):  # type: ignore[no-untyped-def]
        for text in ("Hel", "lo"):
            yield b"data: " + json.dumps(chunk(text)).encode() + b"\n\n"
        raise httpx2.ReadError("connection reset")


async def test_a_model_call_that_fails_mid_stream_is_recorded_beside_its_error(
    publisher: RecordingPublisher,
) -> None:
    def handle(request: httpx2.Request) -> httpx2.Response:
        headers = {"content-type": "text/event-stream"}
        return httpx2.Response(200, stream=BreaksAfter(), headers=headers)

    end = await generate_reply(JOB, Streaming(model_over(handle), publisher, COUNTER), StopSignal())
    assert isinstance(end, ReplyError)
    calls = [e for e in publisher.events if isinstance(e, ModelCall)]
    assert [(c.outcome, c.usage.estimated, c.usage.completion_tokens) for c in calls] == [
        ("failed", True, 2)  # a token a delta, as the model streamed them
    ]


async def test_a_model_call_refused_before_it_streamed_bills_nothing(
    publisher: RecordingPublisher,
) -> None:
    def handle(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(429, json={"error": {"message": "slow down", "type": "x"}})

    await generate_reply(JOB, Streaming(model_over(handle), publisher, COUNTER), StopSignal())
    assert not any(isinstance(e, ModelCall) for e in publisher.events)


class LosingPublisher(RecordingPublisher):
    """Acknowledges no token event: the broker died with them in flight."""

    async def token(self, event: Streamed) -> "asyncio.Future[Any] | None":
        await super().token(event)
        lost: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        lost.set_exception(ConnectionError("nats: connection closed"))
        return lost


async def test_token_events_the_stream_did_not_store_fail_the_attempt() -> None:
    publisher = LosingPublisher()
    client = model_over(streaming(sse(chunk("Hel"), chunk("lo"), chunk(None, "stop"))))
    with pytest.raises(TokensLost):
        await generate_reply(JOB, Streaming(client, publisher, COUNTER), StopSignal())
    assert not any(isinstance(e, ReplyEnd | ReplyError) for e in publisher.events)


class StartLost(RecordingPublisher):
    async def start(self, event: ReplyStart) -> None:
        raise ConnectionError("nats: no responders available for request")


@pytest.mark.parametrize(("attempt", "model_calls"), [(1, 1), (2, 0)])
async def test_a_retry_calls_the_model_only_once_its_start_is_stored(
    attempt: int, model_calls: int
) -> None:
    requests: list[httpx2.Request] = []
    body = streaming(sse(chunk("Hi"), chunk(None, "stop")))

    def model(request: httpx2.Request) -> httpx2.Response:
        requests.append(request)
        return body(request)

    job = ReplyJob(message=MESSAGE, attempt=attempt, prompt=JOB.prompt, model="m", max_tokens=10)
    with pytest.raises(ConnectionError):
        await generate_reply(job, Streaming(model_over(model), StartLost(), COUNTER), StopSignal())
    # A first attempt calls the model while its start is stored (the common case is faster);
    # a retry, which likely follows a failing broker, does not call it at all.
    assert len(requests) == model_calls
