"""Request-reply payloads of the `svc.*` subjects served by persistence.

A reply is always a `*Reply` model; a failure sets `error` (code `not_found`, `bad_request`,
`forbidden`, `conflict` or `internal`) and leaves the result empty, so a caller never has to
guess from a timeout.
"""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.events import Policy, Source, ToolCall, Usage
from shared.models import MAX_TEMPERATURE, MODEL_ID_PATTERN

RpcErrorCode = Literal["not_found", "bad_request", "forbidden", "conflict", "internal"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class RpcError(_Model):
    code: RpcErrorCode
    detail: str


class ModelSettings(_Model):
    """A session's model (a catalogue id; None: the default) and its parameters (None: the
    model's own); checked against the catalogue by the gateway."""

    model: str | None = Field(default=None, pattern=MODEL_ID_PATTERN)
    temperature: float | None = Field(default=None, ge=0, le=MAX_TEMPERATURE)
    max_tokens: int | None = Field(default=None, ge=1)


class SessionCreate(ModelSettings):
    owner: str
    title: str = Field(default="", max_length=200)
    policy: Policy = "queue"
    system_prompt: str | None = Field(default=None, max_length=20_000)


class SessionGet(_Model):
    session_id: str


MemberRole = Literal["member", "viewer"]
"""A `member` reads and writes; a `viewer` reads and sees the stream, but sends nothing."""


class MemberAdd(_Model):
    session_id: str
    user_id: str = Field(min_length=1, max_length=128)
    by: str
    """Who asks: only the session's owner may add members."""
    role: MemberRole = "member"
    """Adding a member again with another role changes it."""


class SessionList(_Model):
    """`svc.sessions.list`: the sessions `user_id` is a member of, latest activity first."""

    user_id: str
    limit: int = Field(default=50, ge=1, le=200)
    before: str | None = Field(default=None, max_length=200)
    """The `next` of the previous page."""


class SessionSummary(_Model):
    session_id: str
    title: str
    owner: str
    role: str
    """The asker's role in it: `owner`, `member` or `viewer`."""
    members: int
    model: str | None = None
    """The catalogue's id of its model (None: the default)."""
    created_at: datetime
    last_active_at: datetime
    """Its newest user message's time, or its creation."""


class SessionPage(_Model):
    sessions: list[SessionSummary] = Field(default_factory=list)
    next: str | None = None
    """Pass back as `before` for the page after this one; None on the last page."""
    error: RpcError | None = None


Resettable = Literal["model", "temperature", "max_tokens"]


class SessionUpdate(ModelSettings):
    """`svc.sessions.update`: the owner changes the fields given (None: unchanged), and puts
    those in `reset` back to their defaults."""

    session_id: str
    by: str
    title: str | None = Field(default=None, max_length=200)
    policy: Policy | None = None
    system_prompt: str | None = Field(default=None, max_length=20_000)
    """The session's own prompt; "" removes it (the workers' default applies again)."""
    reset: list[Resettable] = Field(default_factory=list)


class SessionDelete(_Model):
    """`svc.sessions.delete`: the owner deletes the session; its messages and members go
    (usage and model calls stay: they are the account of what was spent)."""

    session_id: str
    by: str


class MemberRemove(_Model):
    """`svc.sessions.members.remove`: the owner removes a member, or a member leaves."""

    session_id: str
    user_id: str = Field(min_length=1, max_length=128)
    by: str


class SessionInfo(ModelSettings):
    session_id: str
    owner: str
    title: str
    members: list[str]
    created_at: datetime
    policy: Policy = "queue"
    system_prompt: str | None = None
    viewers: list[str] = Field(default_factory=list)
    """The members who only read (role `viewer`)."""


class SessionReply(_Model):
    session: SessionInfo | None = None
    error: RpcError | None = None


class HistoryRequest(_Model):
    session_id: str
    before: str | None = None
    """Cursor from a previous page's `next`; None starts at the newest message."""
    limit: int = Field(default=50, ge=1, le=200)
    for_context: bool = False
    """Only what a reply may see: the messages since the session's context was last cleared
    (`/clear`)."""
    count: bool = False
    """Also count the session's messages (`HistoryPage.total`)."""


class HistoryMessage(_Model):
    message_id: str
    role: Literal["user", "assistant", "system"]
    """`system`: what a command did (`participant` ran it)."""
    participant: str
    content: str
    status: Literal["complete", "cancelled", "error", "budget", "session_budget"]
    in_reply_to: str | None
    attempt: int | None
    model: str | None
    usage: Usage | None
    seq: int | None
    created_at: datetime
    version: int = 1
    """Of a reply: 2, 3… for a regenerated one (`in_reply_to` is the same user message)."""
    current: bool = True
    """Of a reply: whether it is the newest version (the one later replies see)."""
    reasoning: str = ""
    """Of a reply: what the model reasoned before it, when it streams its reasoning."""
    sources: list[Source] = Field(default_factory=list)
    """Of a reply: what it drew on (the retrieval hook's documents, the model's citations)."""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    """Of a reply: the tools it called, in order (see `shared.events.ToolCall`)."""


class MessageGet(_Model):
    """`svc.messages.get`: one user message, and how many versions its reply has."""

    session_id: str
    message_id: str


class MessageInfo(_Model):
    message: HistoryMessage | None = None
    versions: int = 0
    """How many versions of its reply have been recorded (0: none yet)."""
    error: RpcError | None = None


class HistoryPage(_Model):
    messages: list[HistoryMessage] = Field(default_factory=list)
    next: str | None = None
    total: int | None = None
    """How many messages the session has, when asked (`HistoryRequest.count`)."""
    error: RpcError | None = None


class UsageRequest(_Model):
    user_id: str | None
    """Whose usage; None for everyone's (the gateway allows that to administrators only)."""
    session_id: str | None = None
    """One session's only (with `user_id` None: every member's in it)."""
    since: datetime | None = None
    until: datetime | None = None
    """Half-open range [since, until) of reply times."""


class UsageTotals(_Model):
    replies: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost_usd: float = 0.0
    """Sum of the replies that have a price; see `unpriced`."""
    unpriced: int = 0
    """Replies of models without a price."""


class UsageGroup(UsageTotals):
    key: str
    """The day (`YYYY-MM-DD`, UTC), session id or model name."""


class BilledTotals(_Model):
    """Every model call, as the provider bills them: the answered attempts, and those
    superseded, failed or lost with their worker."""

    calls: int = 0
    estimated_calls: int = 0
    """Calls counted by the tokenizer or estimated from what a lost attempt had published."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost_usd: float = 0.0
    unpriced: int = 0


class UsageReport(_Model):
    totals: UsageTotals = Field(default_factory=UsageTotals)
    """The replies: each one's answering attempt (the share the user got)."""
    billed: BilledTotals = Field(default_factory=BilledTotals)
    """Every model call made for them (what the provider bills)."""
    by_day: list[UsageGroup] = Field(default_factory=list)
    by_session: list[UsageGroup] = Field(default_factory=list)
    by_model: list[UsageGroup] = Field(default_factory=list)
    error: RpcError | None = None


class Ping(_Model):
    """`svc.ping`: asks persistence whether it answers (for `/readyz`)."""


class Pong(_Model):
    service: str
