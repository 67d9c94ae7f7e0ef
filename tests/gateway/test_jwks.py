"""RS256 tokens of an external identity provider, checked against its JWKS over real HTTP."""

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from gateway.auth import Authenticator, AuthError, mint_token

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
SECRET = "h" * 64


async def verify(auth: Authenticator, token: str | None) -> str:
    """The user id `auth` finds in a valid token."""
    return (await auth.principal(token)).user_id


@pytest.fixture(scope="module")
def jwks_url() -> Iterator[str]:
    public = json.loads(RSAAlgorithm.to_jwk(KEY.public_key()))
    body = json.dumps({"keys": [{**public, "kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    server.shutdown()
    server.server_close()


def external(key: rsa.RSAPrivateKey = KEY, **claims: Any) -> str:
    payload = {
        "sub": "ext-user",
        "iss": "https://idp.example",
        "aud": "tokenwire",
        "exp": int(time.time()) + 3600,
        **claims,
    }
    return jwt.encode(payload, key, "RS256", headers={"kid": "k1"})


@pytest.fixture
def auth(jwks_url: str) -> Authenticator:
    return Authenticator(
        secret=SECRET, jwks_url=jwks_url, issuer="https://idp.example", audience="tokenwire"
    )


async def test_provider_tokens_are_accepted(auth: Authenticator) -> None:
    assert await verify(auth, external()) == "ext-user"


async def test_own_hs256_tokens_still_work(auth: Authenticator) -> None:
    assert await verify(auth, mint_token("u1", SECRET, 60)) == "u1"


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (lambda: external(OTHER_KEY), "invalid token"),
        (lambda: external(iss="https://evil.example"), "invalid token"),
        (lambda: external(aud="someone-else"), "invalid token"),
        (lambda: external(exp=int(time.time()) - 10), "token expired"),
        (
            lambda: jwt.encode({"sub": "x", "exp": int(time.time()) + 3600}, "k" * 64, "HS384"),
            "invalid token",
        ),
    ],
)
async def test_bad_provider_tokens_are_refused(
    auth: Authenticator, token: Any, reason: str
) -> None:
    with pytest.raises(AuthError, match=reason):
        await verify(auth, token())


async def test_without_a_jwks_url_rs256_is_refused() -> None:
    with pytest.raises(AuthError, match="invalid token"):
        await verify(Authenticator(secret=SECRET), external())
