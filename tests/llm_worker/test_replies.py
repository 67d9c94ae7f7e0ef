"""One reply: start, numbered tokens, exactly one terminal event with the whole text."""

import httpx2

from llm_worker.replies import ReplyOptions, generate_reply
from shared.events import ReplyEnd, ReplyError, ReplyStart, ReplyToken, UserMessage
from support.llm_mock import RecordingPublisher, chunk, openai_over, sse, streaming, usage

OPTIONS = ReplyOptions(model="m", max_tokens=10, system_prompt="Be brief.")
MESSAGE = UserMessage(session_id="s1", message_id="m1", participant="u1", content="hi")


async def test_reply_publishes_start_tokens_and_end(publisher: RecordingPublisher) -> None:
    client = openai_over(
        streaming(sse(chunk("Hi"), chunk(" there"), chunk(None, "length"), usage(12, 2)))
    )
    end = await generate_reply(MESSAGE, 2, client=client, publisher=publisher, options=OPTIONS)

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
    assert end.ttft_ms is not None
    assert end.duration_ms >= end.ttft_ms


async def test_usage_is_estimated_when_the_provider_sends_none(
    publisher: RecordingPublisher,
) -> None:
    client = openai_over(streaming(sse(chunk("abcdefgh"), chunk(None, "stop"))))
    end = await generate_reply(MESSAGE, 1, client=client, publisher=publisher, options=OPTIONS)
    assert isinstance(end, ReplyEnd)
    assert end.usage.estimated
    assert end.usage.completion_tokens == 2


async def test_upstream_failure_ends_in_one_error_event(publisher: RecordingPublisher) -> None:
    def handle(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(429, json={"error": {"message": "slow down", "type": "x"}})

    end = await generate_reply(
        MESSAGE, 1, client=openai_over(handle), publisher=publisher, options=OPTIONS
    )
    assert isinstance(end, ReplyError)
    assert (end.code, end.retryable) == ("upstream_rate_limited", True)
    assert [type(e) for e in publisher.events] == [ReplyStart, ReplyError]
