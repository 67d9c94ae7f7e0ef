"""A model that streams its reasoning: `reasoning_content` (or `reasoning`) deltas become
reasoning events before the reply's tokens, the reply end carries all of it, and usage counts
it."""

from typing import Any

from llm_worker.attempt import ReplyJob
from llm_worker.cancels import StopSignal
from llm_worker.completions import Delta, Reasoning, UsageReport, pieces_from_chunk
from llm_worker.replies import Streaming, generate_reply
from llm_worker.tokens import TokenCounter
from shared.events import ReplyEnd, ReplyReasoning, ReplyStart, ReplyToken, Usage, UserMessage
from support.llm_mock import RecordingPublisher, chunk, model_over, sse, streaming, usage

MESSAGE = UserMessage(session_id="s1", message_id="m1", participant="u1", content="why?")
JOB = ReplyJob(MESSAGE, 1, [{"role": "user", "content": "why?"}], "m", 100)
COUNTER = TokenCounter("gpt-4o-mini")


def thought(text: str, field: str = "reasoning_content") -> dict[str, Any]:
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {field: text}, "finish_reason": None}],
    }


def test_both_spellings_of_reasoning_and_its_token_count_are_read() -> None:
    assert pieces_from_chunk(thought("Hmm.")) == [Reasoning("Hmm.")]
    assert pieces_from_chunk(thought("Hmm.", "reasoning")) == [Reasoning("Hmm.")]
    reported = {
        "choices": [],
        "usage": {
            "prompt_tokens": 5,
            "completion_tokens": 9,
            "total_tokens": 14,
            "completion_tokens_details": {"reasoning_tokens": 6},
        },
    }
    assert pieces_from_chunk(reported) == [
        UsageReport(
            Usage(prompt_tokens=5, completion_tokens=9, total_tokens=14, reasoning_tokens=6)
        )
    ]
    assert pieces_from_chunk(chunk("Because.")) == [Delta("Because.")]


async def test_reasoning_streams_before_the_text_and_ends_with_the_reply() -> None:
    publisher = RecordingPublisher()
    body = sse(thought("First,"), thought(" then."), chunk("Because."), chunk(None, "stop"))
    end = await generate_reply(
        JOB, Streaming(model_over(streaming(body)), publisher, COUNTER), StopSignal()
    )
    kinds = [type(e).__name__ for e in publisher.events]
    assert kinds == ["ReplyStart", "ReplyReasoning", "ReplyReasoning", "ReplyToken", "ReplyEnd"]
    assert isinstance(publisher.events[0], ReplyStart)
    thoughts = [e for e in publisher.events if isinstance(e, ReplyReasoning)]
    assert [(t.index, t.text) for t in thoughts] == [(0, "First,"), (1, " then.")]
    tokens = [e for e in publisher.events if isinstance(e, ReplyToken)]
    assert [(t.index, t.text) for t in tokens] == [(0, "Because.")]
    assert isinstance(end, ReplyEnd)
    assert (end.text, end.reasoning) == ("Because.", "First, then.")
    # No usage from the provider: the tokenizer counts the reasoning in the completion.
    assert end.usage.estimated
    assert end.usage.reasoning_tokens == COUNTER.count("First, then.")
    assert end.usage.completion_tokens == COUNTER.count("Because.") + end.usage.reasoning_tokens


async def test_the_providers_reasoning_tokens_are_kept() -> None:
    publisher = RecordingPublisher()
    reported = usage(7, 5)
    reported["usage"]["completion_tokens_details"] = {"reasoning_tokens": 4}
    body = sse(thought("Hmm."), chunk("Yes."), chunk(None, "stop"), reported)
    end = await generate_reply(
        JOB, Streaming(model_over(streaming(body)), publisher, COUNTER), StopSignal()
    )
    assert isinstance(end, ReplyEnd)
    assert (end.usage.completion_tokens, end.usage.reasoning_tokens, end.usage.estimated) == (
        5,
        4,
        False,
    )
