"""JWTs for clients: minting (dev mode) and verifying, and finding a token on a handshake."""

import secrets
import time
from collections.abc import Mapping, Sequence

import jwt

from shared.frames import BEARER_SUBPROTOCOL_PREFIX

ALGORITHM = "HS256"
ISSUER = "tokenwire"


class AuthError(Exception):
    """Missing, malformed, badly signed or expired token."""


def new_dev_user() -> str:
    return f"dev-{secrets.token_urlsafe(9)}"


def mint_token(user_id: str, secret: str, ttl_s: int) -> str:
    now = int(time.time())
    return jwt.encode(
        {"sub": user_id, "iss": ISSUER, "iat": now, "exp": now + ttl_s}, secret, ALGORITHM
    )


def verify_token(token: str | None, secret: str) -> str:
    """The user id (`sub`) of a valid token; raises `AuthError` otherwise."""
    if not token:
        raise AuthError("no token")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["sub", "exp"]},
        )
    except jwt.ExpiredSignatureError:
        raise AuthError("token expired") from None
    except jwt.InvalidTokenError:
        raise AuthError("invalid token") from None
    sub = claims["sub"]
    if not isinstance(sub, str) or not sub:
        raise AuthError("invalid token")
    return sub


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
