import pytest

from shared import versions
from shared.frames import CancelFrame, FrameError, parse_client_frame


def test_a_versions_id_is_its_messages_with_a_suffix() -> None:
    assert versions.version_id("m1", 2) == "m1~v2"
    assert versions.split("m1~v2") == ("m1", 2)
    assert versions.split("m1~v99") == ("m1", 99)
    assert versions.split("m1") == ("m1", 1)
    assert versions.split("a~b") == ("a~b", 1)


def test_there_are_only_so_many_versions_and_ids_stay_short() -> None:
    with pytest.raises(ValueError, match="at most 99 versions"):
        versions.version_id("m1", 100)
    with pytest.raises(ValueError, match="over 124 characters"):
        versions.version_id("m" * 125, 2)
    assert len(versions.version_id("m" * 124, 99)) == 128


def test_a_client_cancels_a_version_but_cannot_send_one() -> None:
    cancel = parse_client_frame('{"type":"cancel","message_id":"m1~v2"}')
    assert isinstance(cancel, CancelFrame)
    assert cancel.message_id == "m1~v2"
    with pytest.raises(FrameError):
        parse_client_frame('{"type":"message","message_id":"m1~v2","content":"hi"}')
