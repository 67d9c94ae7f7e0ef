"""REST routes of administrators and of a user's own credentials: revoking tokens (one by its
`jti`, or every token of a user issued until now; a user's own, the token presented or all
of theirs), and setting a user's daily token budget.

A revocation is stored in Redis and announced to every gateway, which closes the sockets the
revoked tokens opened (4401) and refuses those tokens from then on (`gateway.revocations`).
A budget set here replaces the deployment's default and a token's claim, for gateways and
workers alike, from the next message on.
"""

import time
from typing import Self

from fastapi import APIRouter, HTTPException, Path, status
from pydantic import BaseModel, Field, model_validator
from redis.exceptions import RedisError

from gateway.deps import AdminDep, PrincipalDep, ResourcesDep
from gateway.revocations import Revocation
from shared import keys
from shared.redis import text

router = APIRouter(tags=["auth"])


class RevocationRequest(BaseModel):
    token_id: str | None = Field(default=None, min_length=1, max_length=256)
    """A token's `jti`."""
    user_id: str | None = Field(default=None, min_length=1, max_length=128)
    """Every token of this user issued until now."""
    expires_at: float | None = None
    """With `token_id`: the token's `exp`, when known; the entry is dropped after it."""

    @model_validator(mode="after")
    def _one_target(self) -> Self:
        if (self.token_id is None) == (self.user_id is None):
            raise ValueError("give either token_id or user_id")
        return self


class OwnRevocation(BaseModel):
    everywhere: bool = False
    """Every token of the caller issued until now, not only the one presented."""


class Revoked(BaseModel):
    token_id: str | None
    user_id: str | None
    issued_until: float | None
    """With `user_id`: tokens issued at or before this moment (seconds since the epoch)."""
    until: float
    """When the entry is dropped (the revoked tokens have expired by then)."""


@router.post("/v1/admin/revocations", status_code=status.HTTP_201_CREATED)
async def revoke(body: RevocationRequest, _: AdminDep, resources: ResourcesDep) -> Revoked:
    """Revoke one token or all of a user's tokens: refused from now on by every gateway, and
    the sockets they opened closed with 4401 within moments. Administrators only."""
    now = time.time()
    keep_until = now + resources.settings.revocations_keep_s
    if body.token_id is not None:
        revocation = Revocation(until=body.expires_at or keep_until, token_id=body.token_id)
    else:
        revocation = Revocation(until=keep_until, user_id=body.user_id, issued_until=now)
    return await _store(resources, revocation)


@router.post("/v1/auth/revoke", status_code=status.HTTP_201_CREATED)
async def revoke_own(
    body: OwnRevocation, principal: PrincipalDep, resources: ResourcesDep
) -> Revoked:
    """Sign out: revoke the token presented (it needs a `jti`), or with `everywhere` every
    token of the caller issued until now."""
    now = time.time()
    if body.everywhere or principal.token_id is None:
        if not body.everywhere:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_ENTITY,
                "this token has no jti: revoke everywhere instead",
            )
        keep_until = now + resources.settings.revocations_keep_s
        revocation = Revocation(until=keep_until, user_id=principal.user_id, issued_until=now)
    else:
        until = principal.expires_at or now + resources.settings.revocations_keep_s
        revocation = Revocation(until=until, token_id=principal.token_id)
    return await _store(resources, revocation)


async def _store(resources: ResourcesDep, revocation: Revocation) -> Revoked:
    try:
        await resources.revocations.revoke(revocation)
    except RedisError:
        raise _unavailable("revocations") from None
    return Revoked(
        token_id=revocation.token_id,
        user_id=revocation.user_id,
        issued_until=revocation.issued_until,
        until=revocation.until,
    )


UserId = Path(min_length=1, max_length=128)


class BudgetChange(BaseModel):
    daily_tokens: int | None = Field(ge=0)
    """Tokens per UTC day (0: no limit); null removes the override."""


class Budget(BaseModel):
    user_id: str
    daily_tokens: int | None
    """The administrator's override, if one is set."""
    default_daily_tokens: int
    """`TOKENWIRE_DAILY_TOKEN_BUDGET` (0: none), used without an override or a token claim."""
    spent_today: int


@router.put("/v1/admin/budgets/{user_id}", tags=["admin"])
async def set_budget(
    body: BudgetChange, _: AdminDep, resources: ResourcesDep, user_id: str = UserId
) -> Budget:
    """Set (or with null, remove) a user's daily token budget. Administrators only."""
    try:
        if body.daily_tokens is None:
            await resources.redis.hdel(keys.BUDGETS, user_id)
        else:
            await resources.redis.hset(keys.BUDGETS, user_id, body.daily_tokens)
    except RedisError:
        raise _unavailable("budgets") from None
    return await get_budget(_, resources, user_id)


@router.get("/v1/admin/budgets/{user_id}", tags=["admin"])
async def get_budget(_: AdminDep, resources: ResourcesDep, user_id: str = UserId) -> Budget:
    """A user's override, the default, and what they spent today. Administrators only."""
    try:
        override = await resources.redis.hget(keys.BUDGETS, user_id)
        spent = await resources.redis.get(keys.budget(user_id, keys.today()))
    except RedisError:
        raise _unavailable("budgets") from None
    return Budget(
        user_id=user_id,
        daily_tokens=None if override is None else int(text(override)),
        default_daily_tokens=resources.settings.daily_token_budget,
        spent_today=int(spent or 0),
    )


def _unavailable(what: str) -> HTTPException:
    return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"{what} unavailable; retry")
