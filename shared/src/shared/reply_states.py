"""The values the reply-queue protocol (`shared.reply_queue`) answers with: a gateway's
admission verdicts, a worker's claims, beginnings and lines."""

from dataclasses import dataclass, field
from typing import Literal

Claim = Literal["ours", "newer", "answered"]
CLAIMS: dict[int, Claim] = {1: "ours", 0: "newer", 2: "answered"}
Verdict = Literal[
    "rate_limited", "budget_exceeded", "replies_in_flight", "busy", "session_budget_exceeded"
]
VERDICTS: dict[int, Verdict] = {
    1: "rate_limited",
    2: "budget_exceeded",
    3: "replies_in_flight",
    4: "busy",
    5: "session_budget_exceeded",
}

CancelVerdict = Literal["cancelled", "not_theirs", "unknown"]
CANCEL_VERDICTS: dict[int, CancelVerdict] = {1: "cancelled", 0: "not_theirs", 2: "unknown"}


@dataclass(frozen=True, slots=True)
class Admitted:
    interrupted: str | None
    """In an `interrupt` session, the message whose running reply is now marked cancelled."""
    turn: int = field(default=0, compare=False)
    """The message's turn in its session: 1, 2…, the same for a resend and for a new version
    of its reply (0: not known); not part of what an admission is equal by."""


@dataclass(frozen=True, slots=True)
class Refused:
    verdict: Verdict
    retry_after_s: float
    limit: int = 0
    """With a budget verdict: the budget that is spent (tokens)."""


@dataclass(frozen=True, slots=True)
class AdmissionLimits:
    messages_per_min: float
    replies_per_session: int
    daily_token_budget: int
    """The default daily budget per user (a token's claim or an administrator's override
    replaces it); 0: no budget."""
    session_token_budget: int = 0
    """Tokens a session may spend in all; 0: no cap."""
    reply_ttl_s: float = 600.0
    """A reply that never ends stops counting against the session after this."""


@dataclass(frozen=True, slots=True)
class Beginning:
    claim: Claim
    cancel_marked: bool
    head: int
    """The session's first in line (0 without a place); the active mark is set when it is the
    message that began and nothing blocks it."""
    admitted_at: float = 0.0
    """When the message was admitted, if it was noted as storing (0: unknown)."""
    blocker: str = ""
    """A message admitted before this one that no worker has taken yet ("": none)."""
    attempt: int = 0
    """The attempt claimed (when ours): the delivery's count, or the next attempt when another
    delivery began under that count (the broker lost count in a crash)."""


@dataclass(frozen=True, slots=True)
class Line:
    head: int
    """The session's first in line."""
    beating: bool
    """Whether a worker answering a queued reply of the session beat lately."""
    blocker: str = ""
    """As `Beginning.blocker`."""
