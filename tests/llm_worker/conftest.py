import pytest

from support.llm_mock import RecordingPublisher


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()
