"""Property: whatever bytes a client sends, the parser answers with a frame or a `FrameError`
with a code, and nothing else. `make fuzz` runs the same properties for minutes."""

import json
import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.frames import FrameError, parse_client_frame

settings.register_profile("ci", max_examples=400, deadline=None)
settings.register_profile(
    "fuzz",
    max_examples=int(os.environ.get("TOKENWIRE_FUZZ_EXAMPLES", "50000")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
settings.load_profile(os.environ.get("TOKENWIRE_FUZZ_PROFILE", "ci"))

CODES = {"bad_json", "bad_frame", "too_large"}
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
frame_like = st.fixed_dictionaries(
    {"type": st.sampled_from(["message", "cancel", "typing", "ping", "x", ""])},
    optional={
        "message_id": json_values | st.text(max_size=200),
        "content": json_values | st.text(max_size=12_000),
        "reply": json_values,
        "state": json_values,
    },
)


def check(raw: str | bytes) -> None:
    """A frame, or a `FrameError` with a known code and a detail; any other exception fails."""
    error: FrameError | None = None
    try:
        parse_client_frame(raw, max_bytes=64 * 1024)
    except FrameError as exc:
        error = exc
    if error is not None:
        assert error.code in CODES
        assert error.detail


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_any_bytes(raw: bytes) -> None:
    check(raw)


@given(st.text(max_size=4096))
def test_any_text(raw: str) -> None:
    check(raw)


@given(json_values)
def test_any_json(value: Any) -> None:
    check(json.dumps(value))


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.large_base_example])
@given(frame_like)
def test_frames_that_almost_make_sense(value: dict[str, Any]) -> None:
    check(json.dumps(value))
