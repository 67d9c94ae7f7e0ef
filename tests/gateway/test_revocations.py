"""The revocation list a gateway holds: tokens by id, users by when their tokens were issued,
entries past their time ignored; and the announcement's encoding."""

from gateway.auth import Principal
from gateway.revocations import Revocation, RevocationList, decode, encode

NOW = 1_800_000_000.0


def token(user: str = "u1", jti: str | None = "t1", issued_at: float | None = NOW) -> Principal:
    return Principal(user, token_id=jti, issued_at=issued_at, expires_at=NOW + 3600)


def test_a_revoked_token_id_covers_that_token_only() -> None:
    known = RevocationList()
    known.add(Revocation(until=NOW + 60, token_id="t1"))
    assert known.covers(token(jti="t1"), now=NOW)
    assert not known.covers(token(jti="t2"), now=NOW)
    assert not known.covers(token(jti=None), now=NOW)
    assert not known.covers(token(jti="t1"), now=NOW + 61)  # past its time


def test_a_revoked_user_covers_tokens_issued_until_then() -> None:
    known = RevocationList()
    known.add(Revocation(until=NOW + 600, user_id="u1", issued_until=NOW))
    assert known.covers(token(issued_at=NOW - 10), now=NOW)
    assert known.covers(token(issued_at=NOW), now=NOW)
    assert not known.covers(token(issued_at=NOW + 1), now=NOW + 1)
    assert known.covers(token(issued_at=None), now=NOW)  # no `iat`: cannot be told apart
    assert not known.covers(token(user="u2", issued_at=NOW - 10), now=NOW)


def test_a_later_user_revocation_replaces_an_earlier_one_not_the_reverse() -> None:
    known = RevocationList()
    known.add(Revocation(until=NOW + 600, user_id="u1", issued_until=NOW + 100))
    known.add(Revocation(until=NOW + 600, user_id="u1", issued_until=NOW))  # an old announcement
    assert known.covers(token(issued_at=NOW + 50), now=NOW + 60)
    known.replace([])
    assert not known.covers(token(issued_at=NOW + 50), now=NOW + 60)


def test_announcements_round_trip_and_garbage_is_none() -> None:
    for revocation in (
        Revocation(until=NOW, token_id="t1"),
        Revocation(until=NOW, user_id="u1", issued_until=NOW - 5),
    ):
        assert decode(encode(revocation)) == revocation
    assert revocation.field == "user:u1"
    assert Revocation(until=NOW, token_id="t1").field == "jti:t1"
    for raw in (b"", b"[]", b'{"token_id":"t1"}', b'{"until":"soon"}'):
        assert decode(raw) is None
