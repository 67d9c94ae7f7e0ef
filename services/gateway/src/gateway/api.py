"""REST routes: dev tokens, sessions, history, health."""

import logging
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response, status
from pydantic import BaseModel, Field
from redis.exceptions import RedisError

from gateway import session_changes
from gateway.auth import mint_token, new_dev_user
from gateway.bus import Unavailable
from gateway.deps import (
    PrincipalDep,
    ResourcesDep,
    UserDep,
    ask,
    member_session,
    refusal_http,
    refused,
)
from gateway.model_routes import checked
from gateway.refusal import Refusal
from gateway.regenerate import regenerate
from shared import keys, rpc, subjects
from shared.events import Policy

log = logging.getLogger(__name__)
router = APIRouter()


class DevToken(BaseModel):
    token: str
    user_id: str


class NewSession(BaseModel):
    title: str = Field(default="", max_length=200)
    policy: Policy = "queue"
    """A message sent while a reply streams: `queue`d after it, `interrupt`s it, is
    `reject`ed, or is answered in `parallel`."""
    system_prompt: str | None = Field(default=None, max_length=20_000)
    """Replaces the workers' system prompt in this session."""
    model: str | None = None
    """An id from `GET /v1/models` (default: the first)."""
    temperature: float | None = None
    """0 to 2 (default: the model server's)."""
    max_tokens: int | None = None
    """A reply's length at most (default: the model's)."""


class CreatedSession(BaseModel):
    session_id: str


class NewMember(BaseModel):
    user_id: str = Field(min_length=1, max_length=128)
    role: rpc.MemberRole = "member"
    """`viewer`: reads and sees the stream, sends nothing. Adding again changes the role."""


class Present(BaseModel):
    participants: list[str]


class History(BaseModel):
    messages: list[rpc.HistoryMessage]
    next: str | None


@router.post("/v1/auth/dev-token", response_model=DevToken, tags=["auth"])
async def dev_token(resources: ResourcesDep) -> DevToken:
    """Mint a token for a new anonymous user. Exists only with `TOKENWIRE_AUTH=dev`."""
    settings = resources.settings
    if settings.auth != "dev" or settings.secret is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "dev tokens are off (TOKENWIRE_AUTH=jwt)")
    user = new_dev_user()
    return DevToken(token=mint_token(user, settings.secret, settings.token_ttl_s), user_id=user)


@router.post("/v1/sessions", status_code=status.HTTP_201_CREATED, tags=["sessions"])
async def create_session(
    resources: ResourcesDep, user: UserDep, body: NewSession | None = None
) -> CreatedSession:
    """Create a session; the caller becomes its owner."""
    body = body or NewSession()
    checked(resources.models, body.model, body.temperature, body.max_tokens)
    request = rpc.SessionCreate(
        owner=user,
        title=body.title,
        policy=body.policy,
        system_prompt=body.system_prompt,
        model=body.model,
        temperature=body.temperature,
        max_tokens=body.max_tokens,
    )
    answer = await ask(resources, subjects.SVC_SESSION_CREATE, request, rpc.SessionReply)
    if answer.session is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "sessions unavailable")
    sid = answer.session.session_id
    resources.sessions.put(sid, answer.session)
    try:  # saves the first reply requests for history and the prompt; without, workers ask
        async with resources.redis.pipeline(transaction=False) as pipe:
            pipe.set(keys.fresh_session(sid), 1, ex=keys.FRESH_SESSION_TTL_S)
            prompt = answer.session.system_prompt or ""
            pipe.set(keys.session_prompt(sid), prompt, ex=keys.SESSION_PROMPT_TTL_S)
            await pipe.execute()
    except RedisError as exc:
        log.warning("fresh-session mark not set: %s", exc)
    return CreatedSession(session_id=sid)


@router.get("/v1/sessions/{session_id}", tags=["sessions"])
async def get_session(session_id: str, resources: ResourcesDep, user: UserDep) -> rpc.SessionInfo:
    return await member_session(resources, session_id, user)


@router.post("/v1/sessions/{session_id}/members", tags=["sessions"])
async def add_member(
    session_id: str, body: NewMember, resources: ResourcesDep, user: UserDep
) -> rpc.SessionInfo:
    """Add a participant; only the session's owner may. Adding a member twice is harmless."""
    session = await member_session(resources, session_id, user)
    if session.owner != user:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "only the owner adds members")
    try:
        answer = await session_changes.invite(resources, session_id, body.user_id, user, body.role)
    except Unavailable:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "sessions unavailable") from None
    if answer.session is None:
        code = 403 if answer.error and answer.error.code == "forbidden" else 503
        raise HTTPException(code, answer.error.detail if answer.error else "no answer")
    return answer.session


class NewVersion(BaseModel):
    message_id: str
    """The new version's own id (`<message_id>~v<version>`): its events carry it."""
    version: int
    seq: int


@router.post(
    "/v1/sessions/{session_id}/messages/{message_id}/regenerate",
    status_code=status.HTTP_202_ACCEPTED,
    tags=["sessions"],
)
async def regenerate_reply(
    session_id: str, message_id: str, resources: ResourcesDep, principal: PrincipalDep
) -> NewVersion:
    """A new version of the reply to `message_id`: it streams to every client of the session
    like any reply (`stream_start` with `version` and `regenerates`), and history keeps every
    version. 404: no such message; 429: a limit."""
    session = await member_session(resources, session_id, principal.user_id)
    try:
        made = await regenerate(
            resources.bus, resources.submissions, session, principal, message_id
        )
    except Unavailable:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "history unavailable") from None
    if isinstance(made, Refusal):
        raise refusal_http(made)
    return NewVersion(message_id=made.message_id, version=made.version, seq=made.seq)


@router.get("/v1/sessions/{session_id}/presence", tags=["sessions"])
async def presence(session_id: str, resources: ResourcesDep, user: UserDep) -> Present:
    """Participants with at least one open connection to the session, on any gateway."""
    await member_session(resources, session_id, user)
    try:
        return Present(participants=await resources.presence.who(session_id))
    except RedisError:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "presence unavailable") from None


@router.get("/v1/sessions/{session_id}/messages", tags=["sessions"])
async def get_messages(
    session_id: str,
    resources: ResourcesDep,
    user: UserDep,
    before: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> History:
    """History, newest first; pass `next` back as `before` for older messages."""
    await member_session(resources, session_id, user)
    page = await ask(
        resources,
        subjects.SVC_HISTORY,
        rpc.HistoryRequest(session_id=session_id, before=before, limit=limit),
        rpc.HistoryPage,
    )
    if page.error is not None:
        raise refused(page.error)
    return History(messages=page.messages, next=page.next)


@router.get("/v1/usage", tags=["usage"])
async def usage(
    resources: ResourcesDep,
    principal: PrincipalDep,
    since: datetime | None = None,
    until: datetime | None = None,
    user_id: Annotated[str | None, Query(max_length=128)] = None,
) -> rpc.UsageReport:
    """Tokens and cost in [since, until), in total and by UTC day, session and model.

    Your own usage; an administrator (token claim `role: admin`) sees everyone's, or one
    user's with `user_id`.
    """
    if user_id is not None and user_id != principal.user_id and not principal.admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "only administrators see others' usage")
    whose = user_id if principal.admin else principal.user_id
    report = await ask(
        resources,
        subjects.SVC_USAGE,
        rpc.UsageRequest(user_id=whose, since=_utc(since), until=_utc(until)),
        rpc.UsageReport,
    )
    if report.error is not None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, report.error.detail)
    return report


def _utc(moment: datetime | None) -> datetime | None:
    """Times without a zone are taken as UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


@router.get("/healthz", tags=["health"])
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz", tags=["health"])
async def readyz(resources: ResourcesDep, response: Response) -> dict[str, Any]:
    """NATS, Redis and persistence all answer; 503 with the failing ones otherwise."""
    checks = {
        "nats": resources.bus.nc.is_connected,
        "redis": await _redis_ok(resources),
        "persistence": await resources.bus.ping_persistence(),
    }
    ready = all(checks.values())
    if not ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return {"status": "ready" if ready else "unavailable", "checks": checks}


async def _redis_ok(resources: ResourcesDep) -> bool:
    try:
        return bool(await resources.redis.ping())
    except Exception:  # any failure means "not ready", reported in the body
        return False
