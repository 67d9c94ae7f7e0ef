"""The reply attempt's decisions, with plain calls: no Redis, no broker, no clock."""

import pytest

from llm_worker.attempt import (
    Forget,
    ReplyJob,
    Waiting,
    after_begin,
    cancelled_before_start,
    refusal,
)
from llm_worker.completions import UpstreamError
from llm_worker.progress import Progress
from llm_worker.tokens import TokenCounter
from shared.events import Usage, UserMessage
from shared.reply_states import Beginning, Line

MESSAGE = UserMessage(session_id="s1", message_id="m1", participant="u1", content="hi")
JOB = ReplyJob(MESSAGE, 2, [{"role": "user", "content": "hi"}], "m", 10)
COUNTER = TokenCounter("gpt-4o-mini")


def test_what_follows_the_claim() -> None:
    assert after_begin(Beginning("answered", False, 0), 5) == "ack"
    assert after_begin(Beginning("newer", False, 0), 5) == "leave"
    assert after_begin(Beginning("ours", False, 5), 5) == "stream"
    assert after_begin(Beginning("ours", False, 4), 5) == "wait"
    assert after_begin(Beginning("ours", True, 0), 0) == "stream"  # parallel: no line


def test_waiting_for_a_head_that_beats_never_skips_it() -> None:
    waiting = Waiting(place=12, stall_s=10, since=0)
    assert waiting.next(Line(10, beating=False), 1, stopped=False) == "wait"
    for now in range(2, 100, 5):
        assert waiting.next(Line(10, beating=True), now, stopped=False) == "wait"
    assert waiting.next(Line(12, beating=True), 100, stopped=False) == "stream"


def test_a_head_nobody_answers_is_skipped_after_the_stall_time() -> None:
    waiting = Waiting(place=12, stall_s=10, since=0)
    assert waiting.next(Line(10, beating=False), 1, stopped=False) == "wait"
    assert waiting.next(Line(10, beating=False), 11, stopped=False) == "wait"
    assert waiting.next(Line(10, beating=False), 11.5, stopped=False) == 10
    assert waiting.next(Line(11, beating=False), 12, stopped=False) == "wait"  # a new head
    assert waiting.next(Line(11, beating=False), 20, stopped=False) == "wait"


def test_a_message_admitted_earlier_blocks_until_taken_or_forgotten() -> None:
    assert after_begin(Beginning("ours", False, 5, 1.0, "m0"), 5) == "wait"
    waiting = Waiting(place=12, stall_s=10, since=0, unstored_s=3)
    assert waiting.next(Line(12, False, "m0"), 1, stopped=False) == "wait"
    assert waiting.next(Line(12, False, "m0"), 4, stopped=False) == "wait"
    assert waiting.next(Line(12, False, "m0"), 4.5, stopped=False) == Forget("m0")
    assert waiting.next(Line(12, False, "m1"), 5, stopped=False) == "wait"  # another one
    assert waiting.next(Line(12, False, ""), 6, stopped=False) == "stream"


def test_a_head_s_stall_time_starts_once_nothing_blocks() -> None:
    waiting = Waiting(place=12, stall_s=10, since=0)
    assert waiting.next(Line(10, False), 1, stopped=False) == "wait"
    assert waiting.next(Line(10, False, "m0"), 5, stopped=False) == "wait"
    assert waiting.next(Line(10, False), 14, stopped=False) == "wait"  # 13 s after first seen
    assert waiting.next(Line(10, False), 24.5, stopped=False) == 10


def test_a_stop_ends_the_wait() -> None:
    waiting = Waiting(place=12, stall_s=10, since=0)
    assert waiting.next(Line(10, beating=True), 1, stopped=True) == "stream"
    assert waiting.next(Line(12, False, "m0"), 2, stopped=True) == "stream"


def test_a_complete_reply_keeps_the_provider_s_usage_and_finish() -> None:
    progress = Progress(started=100.0)
    assert progress.delta("Hi", 100.3) is None
    assert progress.delta(" there", 100.35) == pytest.approx(0.05)
    progress.finish, progress.complete = "length", True
    progress.usage = Usage(prompt_tokens=3, completion_tokens=2, total_tokens=5)
    end = progress.end(JOB, "cancelled", COUNTER, {}, now=101.0)
    assert (end.text, end.finish_reason, end.usage.total_tokens) == ("Hi there", "length", 5)
    assert (end.ttft_ms, end.duration_ms, end.attempt) == (300.0, 1000.0, 2)


def test_a_stopped_reply_is_counted_by_the_tokenizer() -> None:
    for reason, finish in (("cancelled", "cancelled"), ("budget", "budget")):
        progress = Progress(started=0.0)
        progress.delta("hello world", 0.1)
        progress.usage = Usage(prompt_tokens=3, completion_tokens=99, total_tokens=102)
        end = progress.end(JOB, reason, COUNTER, {}, now=0.2)  # type: ignore[arg-type]
        assert end.finish_reason == finish
        assert end.usage.estimated
        assert end.usage.completion_tokens == 2


def test_the_events_an_attempt_ends_with_when_it_does_not_stream() -> None:
    cancelled = cancelled_before_start(MESSAGE, 3, "m")
    assert (cancelled.finish_reason, cancelled.text, cancelled.attempt) == ("cancelled", "", 3)
    assert cancelled.requested_by == "u1"
    error = refusal(MESSAGE, 1, "budget_exceeded", "spent", retryable=False)
    assert (error.code, error.retryable) == ("budget_exceeded", False)
    failed = JOB.failed(UpstreamError("upstream_timeout", "slow", retryable=True))
    assert (failed.code, failed.attempt, failed.retryable) == ("upstream_timeout", 2, True)
    token = JOB.token(4, "x", 2)
    assert token.model_dump() == {
        "v": 1,
        "session_id": "s1",
        "message_id": "m1",
        "type": "reply_token",
        "attempt": 2,
        "index": 4,
        "text": "x",
        "deltas": 2,
    }
