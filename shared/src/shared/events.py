"""Events on the bus: what services publish to each other through the `CHAT` stream.

Every event is JSON with a `type` tag and a schema version `v`. Events are immutable;
`parse_event` turns raw bytes into the right model or raises `pydantic.ValidationError`.
"""

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from shared.relays import PresenceChange as PresenceChange
from shared.relays import TypingRelay as TypingRelay

MAX_CONTENT_CHARS = 10_000

FinishReason = Literal["stop", "length", "cancelled", "budget", "session_budget"]
"""`budget`: the sender's daily token budget ran out; `session_budget`: the session's cap."""
Policy = Literal["queue", "interrupt", "reject", "parallel"]
"""What a session does with a message that arrives while a reply streams: answer it after
(`queue`), cancel the running reply first (`interrupt`), refuse it (`reject`), or answer both
at once (`parallel`)."""


def utcnow() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    v: Literal[1] = 1
    session_id: str
    message_id: str = Field(min_length=1, max_length=128)


class Usage(BaseModel):
    model_config = ConfigDict(frozen=True)

    prompt_tokens: int = Field(default=0, ge=0)
    completion_tokens: int = Field(default=0, ge=0)
    total_tokens: int = Field(default=0, ge=0)
    estimated: bool = False
    """True when counted by the tokenizer because the provider sent no usage."""
    reasoning_tokens: int = Field(default=0, ge=0)
    """Of `completion_tokens`, those the model spent reasoning (as the provider reports them,
    or counted by the tokenizer)."""


class UserMessage(Event):
    """`chat.<sid>.in` (for the default model) or `chat.<sid>.in.<model>`: a participant's
    message, stored before the gateway acknowledges it."""

    type: Literal["user_message"] = "user_message"
    participant: str
    content: str = Field(min_length=1, max_length=MAX_CONTENT_CHARS)
    reply: bool = True
    policy: Policy = "queue"
    daily_budget: int | None = Field(default=None, ge=0)
    """The sender's daily token budget as their token's claim gives it (None: no claim; an
    administrator's override and the deployment's default are read by the worker)."""
    model: str | None = Field(default=None, max_length=48)
    """The catalogue's id of the model to answer with (None: the default model); its
    parameters below are the session's when the message was sent (None: the model's own)."""
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1)
    turn: int | None = Field(default=None, ge=1)
    """Its turn in the session (1, 2, …), given at admission; a new version's is its
    message's."""
    name_session: bool = False
    """The session's first message, in a session without a title: once it is answered, the
    model is asked for a title (`SessionTitled`)."""
    created_at: datetime = Field(default_factory=utcnow)


class ReplyStart(Event):
    """`chat.<sid>.out.start`: attempt `attempt` of the reply to `message_id` begins."""

    type: Literal["reply_start"] = "reply_start"
    attempt: int = Field(ge=1)
    model: str
    turn: int | None = None
    """The turn of the message it answers."""


class ReplyToken(Event):
    """`chat.<sid>.out.token`: text; `index` counts token events of one attempt from 0, and
    `deltas` tells how many of the model's deltas the text joins (the worker joins deltas that
    come faster than its coalescing window)."""

    type: Literal["reply_token"] = "reply_token"
    attempt: int = Field(ge=1)
    index: int = Field(ge=0)
    text: str
    deltas: int = Field(default=1, ge=1)


class Source(BaseModel):
    """What a reply draws on: a document the retrieval hook found, or a citation the model
    made."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(min_length=1, max_length=200)
    title: str = Field(default="", max_length=500)
    url: str = Field(default="", max_length=2000)
    snippet: str = Field(default="", max_length=2000)


class ReplySources(Event):
    """`chat.<sid>.out.token` too: the sources of attempt `attempt`, before its first token
    (the retrieval hook's), or when the model cites them (its annotations)."""

    type: Literal["reply_sources"] = "reply_sources"
    attempt: int = Field(ge=1)
    sources: list[Source]


class ReplyReasoning(Event):
    """`chat.<sid>.out.token` too: what the model reasons before it answers, for models that
    stream their reasoning; `index`, counted apart from the text's, and `deltas` as in
    `ReplyToken`."""

    type: Literal["reply_reasoning"] = "reply_reasoning"
    attempt: int = Field(ge=1)
    index: int = Field(ge=0)
    text: str
    deltas: int = Field(default=1, ge=1)


ToolStatus = Literal["arguments", "running", "done", "failed"]
MAX_TOOL_RESULT_CHARS = 2000
"""The longest result a tool call shows clients (the model gets more: see the worker)."""


class ToolCall(BaseModel):
    """A tool call of a reply, as it ended (in `ReplyEnd.tool_calls` and history)."""

    model_config = ConfigDict(frozen=True)

    call_id: str = Field(min_length=1, max_length=128)
    name: str = Field(max_length=64)
    step: int = Field(ge=1)
    """The model call that asked for it (1: the first; the next step sees its result)."""
    arguments: str = ""
    status: Literal["done", "failed"]
    result: str = Field(default="", max_length=MAX_TOOL_RESULT_CHARS)
    error: str = Field(default="", max_length=500)


class ReplyToolCall(Event):
    """`chat.<sid>.out.token` too: a tool call as it happens. The model's argument deltas
    (`arguments`, each with its delta), `running` when the worker calls the tool, then
    `done` with a short result or `failed` with the reason."""

    type: Literal["reply_tool_call"] = "reply_tool_call"
    attempt: int = Field(ge=1)
    step: int = Field(ge=1)
    call_id: str = Field(min_length=1, max_length=128)
    name: str = Field(max_length=64)
    status: ToolStatus
    arguments: str = ""
    result: str = Field(default="", max_length=MAX_TOOL_RESULT_CHARS)
    error: str = Field(default="", max_length=500)


class Billed(BaseModel):
    """Every model call a reply took: its answering attempt's, and those of earlier attempts
    (as they recorded them, or estimated when they were lost with their worker)."""

    model_config = ConfigDict(frozen=True)

    calls: int = Field(ge=1)
    usage: Usage
    cost_usd: float | None = None
    """None when a call had no price."""


class ReplyEnd(Event):
    """`chat.<sid>.out.end`: the reply finished; `text` is all of it, `reasoning` all the
    model reasoned before it (when it streams its reasoning)."""

    type: Literal["reply_end"] = "reply_end"
    attempt: int = Field(ge=1)
    model: str
    text: str
    reasoning: str = ""
    sources: list[Source] = Field(default_factory=list)
    """Every source of the reply: the retrieval hook's, then the model's citations."""
    warnings: list[str] = Field(default_factory=list)
    """What went wrong without stopping the reply (e.g. the retrieval hook failed)."""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    """Every tool the reply called, in order; `usage` counts every step's model call."""
    finish_reason: FinishReason
    usage: Usage
    cost_usd: float | None = None
    ttft_ms: float | None = None
    duration_ms: float
    participant: str = "assistant"
    requested_by: str | None = None
    """The user whose message this answers: whose usage it is."""
    turn: int | None = None
    """The turn of the message it answers."""
    billed: Billed | None = None
    """With earlier attempts: every call the reply took (None: this attempt's alone)."""
    created_at: datetime = Field(default_factory=utcnow)


class ReplyError(Event):
    """`chat.<sid>.out.error`: the reply failed; `retryable` tells the client whether to resend."""

    type: Literal["reply_error"] = "reply_error"
    attempt: int = Field(ge=1)
    code: str
    message: str
    retryable: bool
    created_at: datetime = Field(default_factory=utcnow)


CallOutcome = Literal["superseded", "failed", "lost", "title"]


class ModelCall(Event):
    """`chat.<sid>.out.call`: a model call of an attempt that ended without a `reply_end`, for
    billing (clients never see it). `superseded`: a newer attempt fenced it off; `failed`: it
    failed after the model streamed; `lost`: its worker died, and a later attempt estimated
    it from what the lost one had published (`usage.estimated`); `title`: a session's title
    (`SessionTitled`, recorded by persistence). An attempt's own record replaces an estimate.
    """

    type: Literal["model_call"] = "model_call"
    attempt: int = Field(ge=1)
    model: str
    usage: Usage
    cost_usd: float | None = None
    outcome: CallOutcome
    requested_by: str | None = None
    created_at: datetime = Field(default_factory=utcnow)


class SystemMessage(Event):
    """`chat.<sid>.system`: what a command did to the session (its model changed, a member
    invited, the context cleared), posted by the gateway that ran it; every member sees it and
    history keeps it, the model never does. `message_id` is the command's."""

    type: Literal["system_message"] = "system_message"
    participant: str
    """Who ran the command."""
    command: str = Field(max_length=32)
    content: str = Field(min_length=1, max_length=MAX_CONTENT_CHARS)
    created_at: datetime = Field(default_factory=utcnow)


class SessionTitled(Event):
    """`chat.<sid>.out.title`: the model titled the session from its first exchange
    (`message_id` is the first message). It replaces the first message's title `replaces`
    only where the session still has that one (nobody renamed it meanwhile); `usage` is the
    title call's, billed to `requested_by`."""

    type: Literal["session_titled"] = "session_titled"
    attempt: int = Field(ge=1)
    title: str = Field(min_length=1, max_length=200)
    replaces: str = Field(max_length=200)
    model: str
    usage: Usage
    cost_usd: float | None = None
    requested_by: str | None = None
    created_at: datetime = Field(default_factory=utcnow)


BusEvent = Annotated[
    UserMessage
    | ReplyStart
    | ReplyToken
    | ReplyReasoning
    | ReplySources
    | ReplyToolCall
    | ReplyEnd
    | ReplyError
    | ModelCall
    | SessionTitled
    | SystemMessage,
    Field(discriminator="type"),
]

_bus_event: TypeAdapter[BusEvent] = TypeAdapter(BusEvent)


def parse_event(data: bytes | str) -> BusEvent:
    """Parse one bus event; raises `pydantic.ValidationError` on anything else."""
    return _bus_event.validate_json(data)
