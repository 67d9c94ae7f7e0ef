"""A retried reply's view of the attempts before it, and what it bills for them: its own
call, theirs as they recorded them, and an estimate of each one lost with its worker."""

from llm_worker.attempt import ReplyJob
from llm_worker.cancels import StopSignal
from llm_worker.earlier import EarlierAttempts
from llm_worker.replies import Streaming, generate_reply
from llm_worker.settings import Price
from llm_worker.tokens import TokenCounter
from shared.events import (
    BusEvent,
    ModelCall,
    ReplyEnd,
    ReplyError,
    ReplyStart,
    ReplyToken,
    Usage,
    UserMessage,
)
from support.llm_mock import RecordingPublisher, chunk, model_over, sse, streaming, usage


def tally(events: list[BusEvent], message_id: str, before: int) -> EarlierAttempts:
    earlier = EarlierAttempts()
    for event in events:
        earlier.add(event, message_id, before)
    return earlier


MESSAGE = UserMessage(session_id="s1", message_id="m1", participant="u1", content="hi")
COUNTER = TokenCounter("gpt-4o-mini")


def start(attempt: int, mid: str = "m1") -> ReplyStart:
    return ReplyStart(session_id="s1", message_id=mid, attempt=attempt, model="m")


def token(attempt: int, deltas: int, mid: str = "m1") -> ReplyToken:
    return ReplyToken(
        session_id="s1", message_id=mid, attempt=attempt, index=0, text="x", deltas=deltas
    )


def recorded(attempt: int, outcome: str, completion: int) -> ModelCall:
    return ModelCall(
        session_id="s1",
        message_id="m1",
        attempt=attempt,
        model="m",
        usage=Usage(prompt_tokens=7, completion_tokens=completion, total_tokens=7 + completion),
        cost_usd=0.1,
        outcome=outcome,  # type: ignore[arg-type]
    )


def test_attempts_that_started_and_recorded_nothing_are_lost() -> None:
    events: list[BusEvent] = [
        start(1), token(1, 3), token(1, 2),  # killed
        start(2), token(2, 4), recorded(2, "superseded", 4),  # frozen, then fenced
        start(3), ReplyError(session_id="s1", message_id="m1", attempt=3, code="x",
                             message="y", retryable=True),  # failed before streaming
        start(4), token(4, 1), recorded(4, "lost", 1),  # lost, estimated by attempt 5
        start(1, "other"), token(1, 9, "other"),  # another message
        start(6), token(6, 2),  # a later attempt than the one reading
    ]  # fmt: skip
    earlier = tally(events, "m1", before=6)
    assert earlier.lost() == {1: 5, 4: 1}
    assert earlier.usage[2].completion_tokens == 4
    assert 3 in earlier.ended
    assert set(earlier.usage) == {2}


async def test_a_retry_bills_its_call_the_recorded_ones_and_an_estimate_of_the_lost() -> None:
    publisher = RecordingPublisher()
    earlier = tally([start(1), token(1, 6), start(2), recorded(2, "superseded", 3)], "m1", 3)
    job = ReplyJob(
        message=MESSAGE,
        attempt=3,
        prompt=[{"role": "user", "content": "hi"}],
        model="m",
        max_tokens=10,
        earlier=earlier,
    )
    client = model_over(streaming(sse(chunk("Hi"), chunk(None, "stop"), usage(11, 1))))
    prices = {"m": Price(input=1_000_000.0, output=1_000_000.0)}  # a dollar a token
    end = await generate_reply(job, Streaming(client, publisher, COUNTER, prices), StopSignal())
    assert isinstance(end, ReplyEnd)
    [lost] = [e for e in publisher.events if isinstance(e, ModelCall)]
    assert (lost.attempt, lost.outcome, lost.usage.estimated) == (1, "lost", True)
    assert (lost.usage.prompt_tokens, lost.usage.completion_tokens) == (11, 6)
    assert end.usage.total_tokens == 12  # the answered attempt's share
    assert end.billed is not None
    assert end.billed.calls == 3
    assert end.billed.usage.total_tokens == 12 + 10 + 17
    assert end.billed.usage.estimated
    assert end.billed.cost_usd == 12 + 0.1 + 17
