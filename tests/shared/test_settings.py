import pytest

from shared.settings import TokenwireSettings


def test_settings_read_the_tokenwire_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENWIRE_NATS_URL", "nats://example:4333")
    monkeypatch.setenv("TOKENWIRE_STREAM_REPLICAS", "3")
    settings = TokenwireSettings()
    assert settings.nats_url == "nats://example:4333"
    assert settings.stream_replicas == 3


def test_invalid_settings_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENWIRE_STREAM_REPLICAS", "9")
    with pytest.raises(ValueError, match="stream_replicas"):
        TokenwireSettings()
