"""Redis keys shared by gateway and workers, spelled once (like `subjects`)."""

import time
from datetime import UTC, datetime

CANCEL_MARK_TTL_S = 600
"""A cancel that arrives before any worker took the message waits this long."""


SESSION_QUEUE_TTL_S = 3600


def cancel_mark(session_id: str, message_id: str) -> str:
    """Set by the gateway on `cancel`; a worker taking the message later honours it."""
    return f"tw:cancel:{session_id}:{message_id}"


REVOCATIONS = "tw:revocations"
"""Hash of revoked tokens (`jti:<id>`) and users (`user:<id>`), each a JSON revocation."""

SENDER_TTL_S = 3600
"""How long the sender of a message that asks for a reply is kept (longer than a reply runs)."""


def sender(session_id: str, message_id: str) -> str:
    """Who sent a message that asks for a reply (set once, by the first admission): besides the
    session's owner and administrators, the one user who may cancel its reply."""
    return f"tw:sender:{session_id}:{message_id}"


FRESH_SESSION_TTL_S = 24 * 3600


def fresh_session(session_id: str) -> str:
    """Set by the gateway when it creates a session, removed by the first context write: while
    it lives, a worker knows the session has no earlier turns and skips the history request."""
    return f"tw:fresh:{session_id}"


def context(session_id: str) -> str:
    """A session's recent turns for the workers (`llm_worker.context`); the gateway deletes it
    when the context is cleared."""
    return f"tw:ctx:{session_id}"


SESSION_PROMPT_TTL_S = 7 * 24 * 3600


def session_prompt(session_id: str) -> str:
    """The session's own system prompt ("" when it has none), as it was created: set by the
    gateway that created it, or by a worker that asked persistence for it."""
    return f"tw:prompt:{session_id}"


def active_reply(session_id: str) -> str:
    """The `message_id` whose reply a worker is streaming in a queued session."""
    return f"tw:active:{session_id}"


def reply_beat(session_id: str) -> str:
    """Refreshed on every in-progress beat by the worker answering a queued session's head of
    line: while it lives, later messages wait for a reply in progress however long it runs."""
    return f"tw:beat:{session_id}"


def session_queue(session_id: str) -> str:
    """Sorted set of the stream sequences of a session's messages waiting for their reply."""
    return f"tw:queue:{session_id}"


def storing(session_id: str) -> str:
    """Sorted set of a queued session's admitted messages no worker has taken yet, scored by
    when they were admitted: a message taken later waits for those admitted before it."""
    return f"tw:storing:{session_id}"


def fence(session_id: str, message_id: str) -> str:
    """The newest attempt that claimed the reply to a message (its fencing number)."""
    return f"tw:fence:{session_id}:{message_id}"


def message_rate(user_id: str) -> str:
    """Token bucket of a user's messages."""
    return f"tw:rate:{user_id}"


def connections(user_id: str) -> str:
    """Sorted set of a user's open connections, scored by expiry."""
    return f"tw:conns:{user_id}"


def presence(session_id: str) -> str:
    """Sorted set of a session's connections (`user\\nconnection`), scored by expiry."""
    return f"tw:presence:{session_id}"


def presence_of(session_id: str, user_id: str) -> str:
    """Sorted set of one user's connections to a session, scored by expiry."""
    return f"tw:presence:{session_id}:{user_id}"


def inflight(session_id: str) -> str:
    """Sorted set of a session's replies asked for and not yet ended, scored by when."""
    return f"tw:inflight:{session_id}"


def budget(user_id: str, day: str) -> str:
    """Tokens a user spent on `day` (UTC, `YYYYMMDD`)."""
    return f"tw:budget:{user_id}:{day}"


BUDGETS = "tw:budgets"
"""Hash of administrators' daily budgets by user id (tokens; 0: none), over the default."""
SESSION_SPEND_TTL_S = 90 * 24 * 3600
"""A session's spending is kept this long after its last reply."""


def session_spend(session_id: str) -> str:
    """Tokens a session's replies spent in all (against `TOKENWIRE_SESSION_TOKEN_BUDGET`)."""
    return f"tw:spent:{session_id}"


def today() -> str:
    """The UTC day (`YYYYMMDD`) whose `budget` key spending is added to now."""
    return datetime.fromtimestamp(time.time(), UTC).strftime("%Y%m%d")


SERVING_ABSENT_S = 120.0
"""A worker not heard from for this long no longer counts as serving its models."""


def serving(model_id: str) -> str:
    """Sorted set of the workers that serve model `model_id`, each scored by when it last said
    so (`llm_worker.serving`); gateways read it (`gateway.model_pools`)."""
    return f"tw:serving:{model_id}"


TURNS_TTL_S = 30 * 24 * 3600


def turns(session_id: str) -> str:
    """Hash of a session's turn numbers: `#` the last given, and each message id's."""
    return f"tw:turns:{session_id}"
