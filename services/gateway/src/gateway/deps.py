"""FastAPI dependencies: the resources made in the lifespan, and the authenticated user."""

from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Depends, Header, HTTPException, Request, status
from pydantic import BaseModel
from redis.asyncio import Redis

from gateway.auth import Authenticator, AuthError, Principal, bearer
from gateway.bus import Bus, Unavailable
from gateway.hub import SessionHub
from gateway.leases import Leases
from gateway.limits import Limits
from gateway.membership import Membership
from gateway.metrics import GatewayMetrics
from gateway.presence import Presence
from gateway.refusal import Refusal
from gateway.revocations import Revocations
from gateway.sessions import SessionCache
from gateway.settings import GatewaySettings
from gateway.submissions import Submissions
from shared import rpc, subjects
from shared.models import Catalogue


@dataclass
class Resources:
    settings: GatewaySettings
    auth: Authenticator
    bus: Bus
    hub: SessionHub
    redis: Redis
    sessions: SessionCache
    presence: Presence
    leases: Leases
    limits: Limits
    submissions: Submissions
    metrics: GatewayMetrics
    revocations: Revocations
    membership: Membership
    models: Catalogue


async def get_resources(request: Request) -> Resources:
    """Async on purpose, like every dependency here: FastAPI runs sync ones in a thread pool,
    a hop per request that showed in the gateway's profile under a burst."""
    resources: Resources = request.app.state.resources
    return resources


ResourcesDep = Annotated[Resources, Depends(get_resources)]


async def get_principal(
    resources: ResourcesDep, authorization: Annotated[str | None, Header()] = None
) -> Principal:
    """The caller, from `Authorization: Bearer <jwt>`; 401 otherwise (a revoked token too)."""
    try:
        principal = await resources.auth.principal(bearer(authorization))
    except AuthError as exc:
        raise _unauthorized(str(exc)) from None
    if resources.revocations.covers(principal):
        raise _unauthorized("token revoked")
    return principal


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"}
    )


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def get_user(principal: PrincipalDep) -> str:
    return principal.user_id


UserDep = Annotated[str, Depends(get_user)]


async def require_operator(
    request: Request,
    resources: ResourcesDep,
    authorization: Annotated[str | None, Header()] = None,
) -> None:
    """The ops endpoints: open on the admin listener (`TOKENWIRE_ADMIN_PORT`), elsewhere an
    administrator's token; 401 without a valid token, 403 with anyone else's."""
    admin_port = resources.settings.admin_port
    server = request.scope.get("server")
    if admin_port and server is not None and server[1] == admin_port:
        return
    principal = await get_principal(resources, authorization)
    if not principal.admin:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "ops endpoints need an administrator's token (or the admin listener)",
        )


async def get_admin(principal: PrincipalDep) -> Principal:
    """An administrator (token claim `role: admin`); 403 for anyone else."""
    if not principal.admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "administrators only")
    return principal


AdminDep = Annotated[Principal, Depends(get_admin)]


T = TypeVar("T", bound=BaseModel)


async def ask(resources: Resources, subject: str, payload: BaseModel, reply: type[T]) -> T:
    """A `svc.*` request for a route; 503 when persistence does not answer."""
    try:
        return await resources.bus.request(subject, payload, reply)
    except Unavailable:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"{subject} unavailable") from None


HTTP_STATUS = {"not_found": 404, "bad_request": 400, "forbidden": 403, "conflict": 409}
"""Persistence's refusals as HTTP statuses (anything else, `internal`: 503)."""


def refused(error: rpc.RpcError | None) -> HTTPException:
    """The HTTP error for a `svc.*` answer that carries no result."""
    if error is None:
        return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "no answer")
    return HTTPException(HTTP_STATUS.get(error.code, 503), error.detail)


REFUSAL_STATUS = {
    "bad_frame": 404,
    "forbidden": 403,
    "busy": 409,
    "rate_limited": 429,
    "budget_exceeded": 429,
}
"""A refusal's HTTP status on a REST route (`bad_frame`: what was named does not exist;
anything else: 503)."""


def refusal_http(refusal: Refusal) -> HTTPException:
    headers = None
    if refusal.retry_after_s is not None:
        headers = {"Retry-After": str(max(1, round(refusal.retry_after_s)))}
    return HTTPException(REFUSAL_STATUS.get(refusal.code, 503), refusal.detail, headers=headers)


async def member_session(resources: Resources, session_id: str, user: str) -> rpc.SessionInfo:
    """The session `user` is a member of; 404 (no such session), 403 (not a member) or 503."""
    if not subjects.is_session_id(session_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such session")
    try:
        session = await resources.sessions.get(session_id)
    except Unavailable:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "sessions unavailable") from None
    if session is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such session")
    if user not in session.members:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "not a member of this session")
    return session
