"""One attempt at a reply, decided by pure code (no I/O, no clock of its own): what follows
its claim, whether it waits its turn or skips a stalled head of line, what it refuses before
the model call, and the events it publishes (what a streamed reply has so far, and its end
built from it: `llm_worker.progress`). `responder` and `replies` carry out what it decides
(the states are drawn in docs/architecture.md, "The reply lifecycle").
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

from llm_worker.completions import ChatMessage, UpstreamError
from llm_worker.earlier import EarlierAttempts
from llm_worker.pricing import cost_usd
from llm_worker.tool_steps import Asked, Ran
from shared.events import (
    CallOutcome,
    ModelCall,
    ReplyEnd,
    ReplyError,
    ReplyReasoning,
    ReplySources,
    ReplyStart,
    ReplyToken,
    ReplyToolCall,
    Source,
    ToolStatus,
    Usage,
    UserMessage,
)
from shared.models import Price
from shared.reply_states import Beginning, Line

D = TypeVar("D", ReplyToken, ReplyReasoning)
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
    sources: tuple[Source, ...] = ()
    """What the retrieval hook found: published before the first token, kept in the end."""
    warnings: tuple[str, ...] = ()
    """What went wrong before the call without stopping the reply (said in its end)."""

    def start(self) -> ReplyStart:
        m = self.message
        return ReplyStart(
            session_id=m.session_id,
            message_id=m.message_id,
            attempt=self.attempt,
            model=self.model,
            turn=m.turn,
        )

    def token(self, index: int, text: str, deltas: int) -> ReplyToken:
        """Built from checked values: no validation per token."""
        return self._delta(ReplyToken, index, text, deltas)

    def reasoning(self, index: int, text: str, deltas: int) -> ReplyReasoning:
        return self._delta(ReplyReasoning, index, text, deltas)

    def sources_found(self, sources: Sequence[Source]) -> ReplySources:
        m = self.message
        return ReplySources(
            session_id=m.session_id,
            message_id=m.message_id,
            attempt=self.attempt,
            sources=list(sources),
        )

    def tool_call(
        self, step: int, call: Asked, status: ToolStatus, arguments: str = ""
    ) -> ReplyToolCall:
        """An event of a tool call under way (`arguments`: a delta of them; or `running`)."""
        m = self.message
        return ReplyToolCall.model_construct(
            session_id=m.session_id,
            message_id=m.message_id,
            attempt=self.attempt,
            step=step,
            call_id=call.call_id,
            name=call.name,
            status=status,
            arguments=arguments,
        )

    def tool_call_ended(self, step: int, call: Asked, result: Ran) -> ReplyToolCall:
        record = result.record(step, call)
        event = self.tool_call(step, call, record.status)
        return event.model_copy(update={"result": record.result, "error": record.error})

    def _delta(self, kind: type[D], index: int, text: str, deltas: int) -> D:
        m = self.message
        return kind.model_construct(
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
        turn=message.turn,
    )
