"""JWTs for clients: minting (dev mode), verifying, and finding a token on a handshake.

Two kinds of token are accepted: HS256 tokens signed with `TOKENWIRE_JWT_SECRET` (issuer
`tokenwire`), and, when `TOKENWIRE_JWT_JWKS_URL` is set, RS256 tokens of an external identity
provider whose keys that JWKS document publishes. `sub` is the user id; a `role` claim of
`admin` (or `admin` in a `roles` list) makes the user an administrator.
"""

import asyncio
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt

from shared.frames import BEARER_SUBPROTOCOL_PREFIX

ALGORITHM = "HS256"
ISSUER = "tokenwire"
ADMIN = "admin"
BUDGET_CLAIM = "tokenwire_daily_tokens"


class AuthError(Exception):
    """Missing, malformed, badly signed or expired token."""


@dataclass(frozen=True)
class Principal:
    user_id: str
    admin: bool = False
    expires_at: float | None = None
    """The token's `exp` (seconds since the epoch): sockets are closed with 4401 then."""
    token_id: str | None = None
    """The token's `jti`: what revoking one token names."""
    issued_at: float | None = None
    """The token's `iat`: revoking a user revokes the tokens issued until then."""
    daily_budget: int | None = None
    """The token's `tokenwire_daily_tokens` claim: this user's daily token budget."""


def new_dev_user() -> str:
    return f"dev-{secrets.token_urlsafe(9)}"


def mint_token(user_id: str, secret: str, ttl_s: int, *, role: str | None = None) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": user_id,
        "iss": ISSUER,
        "iat": now,
        "exp": now + ttl_s,
        "jti": secrets.token_urlsafe(12),
    }
    if role:
        claims["role"] = role
    return jwt.encode(claims, secret, ALGORITHM)


class Authenticator:
    def __init__(
        self,
        *,
        secret: str | None,
        jwks_url: str | None = None,
        issuer: str | None = None,
        audience: str | None = None,
    ) -> None:
        self._secret = secret
        self._jwks = (
            jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=300, timeout=5)
            if jwks_url
            else None
        )
        self._issuer = issuer
        self._audience = audience

    async def principal(self, token: str | None) -> Principal:
        """Who a valid token names, and whether they are an administrator; raises
        `AuthError` for a missing, malformed, badly signed or expired token."""
        if not token:
            raise AuthError("no token")
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
        except jwt.InvalidTokenError:
            raise AuthError("invalid token") from None
        if algorithm == ALGORITHM and self._secret:
            return _principal(_decode(token, self._secret, ALGORITHM, issuer=ISSUER))
        if algorithm == "RS256" and self._jwks is not None:
            try:  # the JWKS client fetches with urllib: keep it off the event loop
                key = await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)
            except jwt.PyJWKClientError:
                raise AuthError("invalid token") from None
            claims = _decode(token, key.key, "RS256", issuer=self._issuer, audience=self._audience)
            return _principal(claims)
        raise AuthError("invalid token")


def _decode(
    token: str | None,
    key: Any,
    algorithm: str,
    *,
    issuer: str | None,
    audience: str | None = None,
) -> dict[str, Any]:
    if not token:
        raise AuthError("no token")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            issuer=issuer,
            audience=audience,
            options={"require": ["sub", "exp"]},
        )
    except jwt.ExpiredSignatureError:
        raise AuthError("token expired") from None
    except jwt.InvalidTokenError:
        raise AuthError("invalid token") from None
    return claims


def _principal(claims: Mapping[str, Any]) -> Principal:
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise AuthError("invalid token")
    roles = claims.get("roles")
    admin = claims.get("role") == ADMIN or (isinstance(roles, list) and ADMIN in roles)
    jti = claims.get("jti")
    budget = claims.get(BUDGET_CLAIM)
    return Principal(
        sub,
        admin,
        expires_at=_seconds(claims.get("exp")),
        token_id=jti if isinstance(jti, str) and jti else None,
        issued_at=_seconds(claims.get("iat")),
        daily_budget=budget if isinstance(budget, int) and budget >= 0 else None,
    )


def _seconds(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def bearer(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer …` header value."""
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def token_from_handshake(
    headers: Mapping[str, str], subprotocols: Sequence[str], query: Mapping[str, str]
) -> str | None:
    """The token: `Authorization` header, else a `bearer.<jwt>` subprotocol, else `?token=`."""
    from_header = bearer(headers.get("authorization"))
    if from_header:
        return from_header
    for proto in subprotocols:
        if proto.startswith(BEARER_SUBPROTOCOL_PREFIX):
            return proto.removeprefix(BEARER_SUBPROTOCOL_PREFIX)
    return query.get("token") or None
