"""Every NATS subject tokenwire uses, spelled once.

Stored in the `CHAT` stream: `chat.<sid>.in` (messages for the default model),
`chat.<sid>.in.<model>` (for another model of the catalogue) and
`chat.<sid>.out.{start,token,end,error,call}` and `chat.<sid>.system` (what a command did).
The stream republishes them to `live.<sid>.…` with the stream sequence in `Nats-Sequence`.
Core NATS only (not stored): `chat.<sid>.cancel`, `.typing`, `.presence`.
Request-reply served by persistence: `svc.*`. Between gateways: `gateway.revocations`,
`gateway.members`.
"""

import re
from typing import Final

STREAM: Final = "CHAT"

SESSION_ID_PATTERN: Final = r"^[A-Za-z0-9_-]{1,64}$"
"""A session id is one NATS subject token: no dots, wildcards or spaces."""
_SESSION_ID = re.compile(SESSION_ID_PATTERN)

# Wildcards used by stream, consumers and gateways.
STORED: Final = ("chat.*.in", "chat.*.in.*", "chat.*.out.>", "chat.*.system")
ALL_IN: Final = "chat.*.in"
"""Messages for the default model."""
ALL_IN_POOLS: Final = "chat.*.in.*"
"""Messages for the catalogue's other models."""
ALL_OUT_END: Final = "chat.*.out.end"
ALL_OUT_ERROR: Final = "chat.*.out.error"
ALL_OUT_CALL: Final = "chat.*.out.call"
ALL_OUT_TITLE: Final = "chat.*.out.title"
ALL_SYSTEM: Final = "chat.*.system"
ALL_CANCEL: Final = "chat.*.cancel"
REPUBLISH_SOURCE: Final = "chat.>"
REVOCATIONS: Final = "gateway.revocations"
"""Core NATS, gateways only: a token or a user revoked; every gateway closes their sockets."""
MEMBERSHIP: Final = "gateway.members"
"""Core NATS, gateways only: a session changed (its settings, or a member left or was removed);
every gateway forgets what it cached of it, and closes a removed member's sockets on it."""
REPUBLISH_DEST: Final = "live.>"

# Request-reply services (persistence, queue group `persistence`).
SVC_PING: Final = "svc.ping"
SVC_SESSION_CREATE: Final = "svc.sessions.create"
SVC_SESSION_GET: Final = "svc.sessions.get"
SVC_SESSION_LIST: Final = "svc.sessions.list"
SVC_SESSION_UPDATE: Final = "svc.sessions.update"
SVC_SESSION_DELETE: Final = "svc.sessions.delete"
SVC_MEMBER_ADD: Final = "svc.sessions.members.add"
SVC_MEMBER_REMOVE: Final = "svc.sessions.members.remove"
SVC_HISTORY: Final = "svc.history"
SVC_MESSAGE_GET: Final = "svc.messages.get"
SVC_USAGE: Final = "svc.usage"


_INBOXES: Final = {
    "gateway": "_INBOX_gateway",
    "llm-worker": "_INBOX_worker",
    "persistence": "_INBOX_persistence",
}


def inbox(service: str) -> str:
    """The reply-subject prefix of `service`: each may read only its own replies (see
    deploy/nats/nats.conf); anything else uses NATS's default `_INBOX`."""
    return _INBOXES.get(service, "_INBOX")


def is_session_id(value: str) -> bool:
    """True when `value` can be used as a session id (and so as a subject token)."""
    return _SESSION_ID.match(value) is not None


def chat_in(session_id: str, pool: str = "") -> str:
    """Where a message for the model `pool` goes ("": the default model's queue)."""
    return f"chat.{session_id}.in.{pool}" if pool else f"chat.{session_id}.in"


def pool_in(pool: str) -> str:
    """Every session's messages for the model `pool` ("": the default model)."""
    return f"chat.*.in.{pool}" if pool else ALL_IN


def out_start(session_id: str) -> str:
    return f"chat.{session_id}.out.start"


def out_token(session_id: str) -> str:
    return f"chat.{session_id}.out.token"


def out_end(session_id: str) -> str:
    return f"chat.{session_id}.out.end"


def out_error(session_id: str) -> str:
    return f"chat.{session_id}.out.error"


def out_title(session_id: str) -> str:
    """A session's title, from the model (`SessionTitled`): stored, shown to clients."""
    return f"chat.{session_id}.out.title"


def out_call(session_id: str) -> str:
    """A model call for billing (`ModelCall`): stored, never shown to clients."""
    return f"chat.{session_id}.out.call"


def system(session_id: str) -> str:
    """A system message (`SystemMessage`): stored, shown to every member."""
    return f"chat.{session_id}.system"


EVERY_REPLY: Final = "*"
"""The payload of a cancel that stops every reply of the session (it was deleted); any other
payload is one message id."""


def cancel(session_id: str) -> str:
    return f"chat.{session_id}.cancel"


def typing(session_id: str) -> str:
    return f"chat.{session_id}.typing"


def presence(session_id: str) -> str:
    return f"chat.{session_id}.presence"


def session_stored(session_id: str) -> str:
    """Filter for every stored event of one session (replay consumers)."""
    return f"chat.{session_id}.>"


def live(session_id: str) -> str:
    """What a gateway subscribes to for a session it holds."""
    return f"live.{session_id}.>"


def split(subject: str) -> tuple[str, str]:
    """`chat.<sid>.out.token` or `live.<sid>.out.token` → (`<sid>`, `out.token`).

    Raises `ValueError` for a subject outside the `chat.`/`live.` families.
    """
    prefix, _, rest = subject.partition(".")
    session_id, _, kind = rest.partition(".")
    if prefix not in ("chat", "live") or not session_id or not kind:
        raise ValueError(f"not a session subject: {subject!r}")
    return session_id, kind


def family(subject: str) -> str:
    """`chat.<sid>.out.token` → `chat.*.out.token`: a subject without its session, as a
    bounded label for metrics (other subjects are returned as they are)."""
    try:
        _, kind = split(subject)
    except ValueError:
        return subject
    return f"{subject.partition('.')[0]}.*.{kind}"
