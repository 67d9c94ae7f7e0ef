"""Signatures of the usage webhook's deliveries, replay-safe: the HMAC covers a timestamp
with the body, so a delivery captured on the way cannot be posted again later.

The header is `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" with the secret>`. A
receiver recomputes the HMAC over the timestamp it was given and the raw body, compares in
constant time, and refuses a timestamp further than its tolerance from its own clock.
"""

import hashlib
import hmac
import time

SCHEME = "v1"
TOLERANCE_S = 300
"""How far a delivery's timestamp may be from the receiver's clock (either way)."""


def sign(body: bytes, secret: str, *, at: float | None = None) -> str:
    """The signature header for `body`, made at `at` (now by default)."""
    timestamp = int(time.time() if at is None else at)
    return f"t={timestamp},{SCHEME}={_digest(timestamp, body, secret)}"


def verify(
    header: str | None,
    body: bytes,
    secret: str,
    *,
    tolerance_s: float = TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """Whether `header` signs `body` with `secret` at a time within `tolerance_s` of `now`.
    Several `v1=` values may be given (a secret being rotated): one match is enough."""
    if not header:
        return False
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == SCHEME:
            signatures.append(value)
    if timestamp is None or not signatures:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    expected = _digest(timestamp, body, secret)
    return any(hmac.compare_digest(expected, each) for each in signatures)


def _digest(timestamp: int, body: bytes, secret: str) -> str:
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
