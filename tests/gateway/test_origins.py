import pytest

from gateway.origins import origin_allowed


@pytest.mark.parametrize(
    ("origin", "dev", "allowed"),
    [
        (None, False, True),  # not a browser
        ("http://gw.example:8000", False, True),  # same origin
        ("https://app.example", False, True),  # configured
        ("https://APP.example/", False, True),
        ("https://evil.example", False, False),
        ("http://localhost:3000", False, False),
        ("http://localhost:3000", True, True),  # dev: any localhost
        ("http://127.0.0.1:5173", True, True),
        ("null", True, False),
        ("file://", True, False),
    ],
)
def test_origin_allow_list(origin: str | None, dev: bool, allowed: bool) -> None:
    assert (
        origin_allowed(origin, "gw.example:8000", allowed=["https://app.example"], dev=dev)
        is allowed
    )
