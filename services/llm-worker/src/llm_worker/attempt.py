"""One attempt at a reply, decided by pure code (no I/O, no clock of its own): what follows
its claim, whether it waits its turn or skips a stalled head of line, what it refuses before
the model call, what a streamed reply has so far, and the events it publishes — its end
built here from what happened. `responder` and `replies` carry out what it decides
(the states are drawn in docs/architecture.md, "The reply lifecycle").
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from llm_worker.cancels import StopReason
from llm_worker.completions import ChatMessage, UpstreamError
from llm_worker.earlier import EarlierAttempts
from llm_worker.pricing import cost_usd
from llm_worker.tokens import TokenCounter
from shared.events import (
    Billed,
    CallOutcome,
    FinishReason,
    ModelCall,
    ReplyEnd,
    ReplyError,
    ReplyStart,
    ReplyToken,
    Usage,
    UserMessage,
)
from shared.models import Price
from shared.reply_states import Beginning, Line

AfterBegin = Literal["ack", "leave", "wait", "stream"]
"""`ack`: answered already; `leave`: a newer attempt has it (no ack); `wait` its turn; or
`stream`."""


def after_begin(beginning: Beginning, place: int) -> AfterBegin:
    """What an attempt does once `ReplyQueue.begin` answered (a cancel mark it found is the
    caller's to honour: the attempt goes on, and ends at once as cancelled)."""
    match beginning.claim:
        case "answered":
            return "ack"
        case "newer":
            return "leave"
        case "ours":
            waits = place and (beginning.head != place or beginning.blocker)
            return "wait" if waits else "stream"


UNSTORED_S = 10.0
"""How long a message waits for one admitted before it that no worker has taken: far longer
than a delivery takes to begin, and than a gateway waits for the stream to store a message."""


@dataclass(frozen=True, slots=True)
class Forget:
    """Stop waiting for this admitted message: no worker took it, so it was never stored."""

    message_id: str


@dataclass(slots=True)
class Waiting:
    """An attempt waiting for every earlier message of its session to have its reply.

    A head of line nobody answers (no beat) for longer than `stall_s` was given up on by the
    stream (or lost before it was stored): it is skipped. A head whose worker beats, however
    long its reply runs, is waited for. A blocker (a message admitted earlier that no worker
    has taken) is waited for up to `unstored_s`, then forgotten.
    """

    place: int
    stall_s: float
    since: float
    """When the current head was first seen, or last seen beating."""
    waiting_on: int = 0
    unstored_s: float = UNSTORED_S
    blocked_by: str = ""
    blocked_since: float = 0.0

    def next(
        self, line: Line, now: float, *, stopped: bool
    ) -> Literal["stream", "wait"] | int | Forget:
        """`stream` (its turn, or stopped), `wait`, the head to skip or the blocker to forget."""
        if stopped or (line.head == self.place and not line.blocker):
            return "stream"
        if line.blocker:
            self.waiting_on = 0  # the head's stall time starts once nothing blocks
            if line.blocker != self.blocked_by:
                self.blocked_by, self.blocked_since = line.blocker, now
            elif now - self.blocked_since > self.unstored_s:
                return Forget(line.blocker)
            return "wait"
        if line.head != self.waiting_on or line.beating:
            self.waiting_on, self.since = line.head, now
        elif now - self.since > self.stall_s:
            return line.head
        return "wait"


@dataclass(frozen=True)
class ReplyJob:
    message: UserMessage
    attempt: int
    prompt: list[ChatMessage]
    model: str
    max_tokens: int
    earlier: EarlierAttempts | None = None
    """What the stream held of earlier attempts, for a retry: their calls are billed too."""
    temperature: float | None = None

    def start(self) -> ReplyStart:
        m = self.message
        return ReplyStart(
            session_id=m.session_id, message_id=m.message_id, attempt=self.attempt, model=self.model
        )

    def token(self, index: int, text: str, deltas: int) -> ReplyToken:
        """Built from checked values: no validation per token."""
        m = self.message
        return ReplyToken.model_construct(
            session_id=m.session_id,
            message_id=m.message_id,
            attempt=self.attempt,
            index=index,
            text=text,
            deltas=deltas,
        )

    def call(
        self, outcome: CallOutcome, usage: Usage, prices: Mapping[str, Price], attempt: int = 0
    ) -> ModelCall:
        """The record of this job's model call (or, with `attempt`, of an earlier attempt's
        that was lost with its worker)."""
        m = self.message
        return ModelCall(
            session_id=m.session_id,
            message_id=m.message_id,
            attempt=attempt or self.attempt,
            model=self.model,
            usage=usage,
            cost_usd=cost_usd(prices, self.model, usage),
            outcome=outcome,
            requested_by=m.participant,
        )

    def failed(self, failure: UpstreamError) -> ReplyError:
        return refusal(
            self.message, self.attempt, failure.code, failure.message, retryable=failure.retryable
        )


def refusal(
    message: UserMessage, attempt: int, code: str, text: str, *, retryable: bool
) -> ReplyError:
    """The terminal event of an attempt that does not (or cannot) answer."""
    return ReplyError(
        session_id=message.session_id,
        message_id=message.message_id,
        attempt=attempt,
        code=code,
        message=text,
        retryable=retryable,
    )


def cancelled_before_start(message: UserMessage, attempt: int, model: str) -> ReplyEnd:
    return ReplyEnd(
        session_id=message.session_id,
        message_id=message.message_id,
        attempt=attempt,
        model=model,
        text="",
        finish_reason="cancelled",
        usage=Usage(estimated=True),
        duration_ms=0,
        requested_by=message.participant,
    )


@dataclass
class Progress:
    """What a streaming reply has so far. Times are `time.monotonic()` values passed in."""

    started: float
    texts: list[str] = field(default_factory=list)
    ttft_ms: float | None = None
    finish: FinishReason = "stop"
    usage: Usage | None = None
    complete: bool = False
    """The model's stream ended by itself (a stop that came later changes nothing)."""
    last_delta: float = 0.0

    def delta(self, text: str, now: float) -> float | None:
        """Record a delta; the seconds since the previous one (None for the first)."""
        gap = None if self.ttft_ms is None else now - self.last_delta
        if self.ttft_ms is None:
            self.ttft_ms = _ms(now - self.started)
        self.last_delta = now
        self.texts.append(text)
        return gap

    def end(
        self,
        job: ReplyJob,
        stopped: StopReason | None,
        counter: TokenCounter,
        prices: Mapping[str, Price],
        now: float,
    ) -> ReplyEnd:
        """The terminal event: a reply stopped before the model ended it is `cancelled`,
        `budget` or `session_budget`, with usage counted by the tokenizer (the provider's
        was not the whole stream); usage is counted too when the provider reported none."""
        finish, usage = self.finish, self.usage
        if not self.complete and stopped in ("cancelled", "budget", "session_budget"):
            finish = stopped
            usage = None
        text = "".join(self.texts)
        usage = usage or counted(counter, job.prompt, text)
        return ReplyEnd(
            session_id=job.message.session_id,
            message_id=job.message.message_id,
            attempt=job.attempt,
            model=job.model,
            text=text,
            finish_reason=finish,
            usage=usage,
            cost_usd=cost_usd(prices, job.model, usage),
            ttft_ms=self.ttft_ms,
            duration_ms=_ms(now - self.started),
            requested_by=job.message.participant,
        )

    def spent(self, job: ReplyJob, counter: TokenCounter) -> Usage | None:
        """What the model call cost so far, for an attempt that ends without a reply end:
        the provider's count if its stream ended; else the prompt counted by the tokenizer
        and one completion token per delta received (OpenAI-compatible servers stream a
        token a chunk; the same unit as the estimate of a lost attempt). None when the model
        streamed nothing (nothing to bill but, perhaps, the prompt)."""
        if self.usage is not None and self.complete:
            return self.usage
        if not self.texts:
            return None
        prompt = counter.count_messages(job.prompt)
        completion = len(self.texts)
        return Usage(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=prompt + completion,
            estimated=True,
        )


def billed(end: ReplyEnd, usage: Mapping[int, Usage], cost: Mapping[int, float | None]) -> Billed:
    """`end`'s call with the earlier attempts' (`usage` and `cost` by attempt)."""
    usages = [end.usage, *usage.values()]
    costs = [end.cost_usd, *cost.values()]
    return Billed(
        calls=len(usages),
        usage=Usage(
            prompt_tokens=sum(u.prompt_tokens for u in usages),
            completion_tokens=sum(u.completion_tokens for u in usages),
            total_tokens=sum(u.total_tokens for u in usages),
            estimated=any(u.estimated for u in usages),
        ),
        cost_usd=None if None in costs else round(sum(c or 0.0 for c in costs), 8),
    )


def counted(counter: TokenCounter, prompt: list[ChatMessage], text: str) -> Usage:
    """Usage counted with the tokenizer, when the provider reported none."""
    prompt_tokens = counter.count_messages(prompt)
    completion_tokens = counter.count(text)
    return Usage(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
        estimated=True,
    )


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)
