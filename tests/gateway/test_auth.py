"""Tokens: minted in dev mode, verified on every request, found wherever a client can put one."""

import time

import jwt
import pytest

from gateway.auth import (
    Authenticator,
    AuthError,
    mint_token,
    token_from_handshake,
)

SECRET = "s" * 64


async def verify_token(token: str | None, secret: str) -> str:
    """The user id an authenticator with only `secret` finds in `token`."""
    return (await Authenticator(secret=secret).principal(token)).user_id


async def test_a_minted_token_names_its_user() -> None:
    assert await verify_token(mint_token("u1", SECRET, 60), SECRET) == "u1"


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (None, "no token"),
        ("", "no token"),
        ("garbage", "invalid token"),
        (mint_token("u1", "x" * 64, 3600), "invalid token"),
        (mint_token("u1", SECRET, -10), "token expired"),
        (
            jwt.encode({"sub": "u1", "exp": int(time.time()) + 3600}, SECRET, "HS256"),
            "invalid token",
        ),  # no issuer
        (
            jwt.encode(
                {"sub": "u1", "iss": "tokenwire", "exp": int(time.time()) + 3600}, SECRET, "HS512"
            ),
            "invalid token",
        ),
    ],
)
async def test_bad_tokens_are_refused(token: str | None, reason: str) -> None:
    with pytest.raises(AuthError, match=reason):
        await verify_token(token, SECRET)


def test_handshake_token_prefers_header_then_subprotocol_then_query() -> None:
    headers = {"authorization": "Bearer from-header"}
    protos = ["tokenwire.v1", "bearer.from-proto"]
    query = {"token": "from-query"}
    assert token_from_handshake(headers, protos, query) == "from-header"
    assert token_from_handshake({}, protos, query) == "from-proto"
    assert token_from_handshake({}, ["tokenwire.v1"], query) == "from-query"
    assert token_from_handshake({"authorization": "Basic abc"}, [], {}) is None


async def test_an_admin_role_claim_makes_an_administrator() -> None:
    auth = Authenticator(secret=SECRET)
    boss = await auth.principal(mint_token("boss", SECRET, 3600, role="admin"))
    assert (boss.user_id, boss.admin) == ("boss", True)
    assert boss.expires_at is not None
    assert boss.expires_at > time.time() + 3500
    user = await auth.principal(mint_token("u1", SECRET, 3600))
    assert (user.user_id, user.admin) == ("u1", False)
    roles = jwt.encode(
        {
            "sub": "ops",
            "iss": "tokenwire",
            "exp": int(time.time()) + 3600,
            "roles": ["reader", "admin"],
        },
        SECRET,
        "HS256",
    )
    assert (await auth.principal(roles)).admin


async def test_a_minted_token_carries_an_id_and_when_it_was_issued() -> None:
    before = time.time()
    one = await Authenticator(secret=SECRET).principal(mint_token("u1", SECRET, 60))
    two = await Authenticator(secret=SECRET).principal(mint_token("u1", SECRET, 60))
    assert one.token_id
    assert one.token_id != two.token_id
    assert one.issued_at is not None
    assert before - 1 <= one.issued_at <= time.time()
