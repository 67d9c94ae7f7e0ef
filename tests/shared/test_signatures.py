"""The usage webhook's signatures: a timestamp signed with the body, refused when old, when
the body or the timestamp was changed, or with another secret."""

import hashlib
import hmac

from shared import signatures

SECRET = "s" * 40
BODY = b'{"id":"s1:m1","usage":{"total_tokens":61}}'
AT = 1_800_000_000


def test_a_fresh_delivery_verifies() -> None:
    header = signatures.sign(BODY, SECRET, at=AT)
    assert header.startswith(f"t={AT},v1=")
    assert signatures.verify(header, BODY, SECRET, now=AT + 10)


def test_the_hmac_covers_the_timestamp_and_the_body() -> None:
    expected = hmac.new(SECRET.encode(), f"{AT}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert signatures.sign(BODY, SECRET, at=AT) == f"t={AT},v1={expected}"


def test_a_replayed_delivery_is_refused_after_the_tolerance() -> None:
    header = signatures.sign(BODY, SECRET, at=AT)
    late = AT + signatures.TOLERANCE_S + 1
    assert not signatures.verify(header, BODY, SECRET, now=late)
    assert not signatures.verify(header, BODY, SECRET, now=AT - signatures.TOLERANCE_S - 1)
    assert signatures.verify(header, BODY, SECRET, tolerance_s=3600, now=late)


def test_a_new_timestamp_on_an_old_signature_is_refused() -> None:
    digest = signatures.sign(BODY, SECRET, at=AT).split("v1=")[1]
    assert not signatures.verify(f"t={AT + 600},v1={digest}", BODY, SECRET, now=AT + 600)


def test_a_changed_body_or_another_secret_is_refused() -> None:
    header = signatures.sign(BODY, SECRET, at=AT)
    assert not signatures.verify(header, BODY.replace(b"61", b"6"), SECRET, now=AT)
    assert not signatures.verify(header, BODY, "t" * 40, now=AT)


def test_one_matching_signature_of_several_is_enough() -> None:
    old = signatures.sign(BODY, "o" * 40, at=AT).split(",")[1]
    header = f"{signatures.sign(BODY, SECRET, at=AT)},{old}"
    assert signatures.verify(header, BODY, SECRET, now=AT)
    assert signatures.verify(header, BODY, "o" * 40, now=AT)


def test_malformed_headers_are_refused() -> None:
    digest = signatures.sign(BODY, SECRET, at=AT).split("v1=")[1]
    for header in (None, "", "sha256=" + digest, f"v1={digest}", f"t=x,v1={digest}", f"t={AT}"):
        assert not signatures.verify(header, BODY, SECRET, now=AT)
