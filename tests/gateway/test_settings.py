import pytest
from pydantic import SecretStr

from gateway.settings import GatewaySettings


def test_jwt_mode_requires_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOKENWIRE_JWT_SECRET", raising=False)
    with pytest.raises(ValueError, match="TOKENWIRE_JWT_SECRET or TOKENWIRE_JWT_JWKS_URL"):
        GatewaySettings(auth="jwt")


def test_short_secrets_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        GatewaySettings(auth="jwt", jwt_secret=SecretStr("short"), env="development")


def test_dev_mode_makes_a_random_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOKENWIRE_JWT_SECRET", raising=False)
    one, two = (
        GatewaySettings(auth="dev", env="development"),
        GatewaySettings(auth="dev", env="development"),
    )
    assert one.secret is not None
    assert len(one.secret) >= 32
    assert one.secret != two.secret


def test_allowed_origins_read_as_a_list_or_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENWIRE_ALLOWED_ORIGINS", "https://a.example, https://b.example/")
    assert GatewaySettings(auth="dev", env="development").allowed_origins == [
        "https://a.example",
        "https://b.example",
    ]
    monkeypatch.setenv("TOKENWIRE_ALLOWED_ORIGINS", '["https://c.example"]')
    assert GatewaySettings(auth="dev", env="development").allowed_origins == ["https://c.example"]


def test_production_refuses_dev_auth_and_placeholder_secrets() -> None:
    with pytest.raises(ValueError, match="refused in production"):
        GatewaySettings(auth="dev")
    with pytest.raises(ValueError, match="looks like a placeholder"):
        GatewaySettings(jwt_secret=SecretStr("please-changeme-please-changeme-please-changeme"))
    with pytest.raises(ValueError, match="looks like a placeholder"):
        GatewaySettings(jwt_secret=SecretStr("a" * 48))
    good = GatewaySettings(jwt_secret=SecretStr("Qm9vbGVhbnMgYXJlIGZ1bi4gUmFuZG9tIGJ5dGVzIGFyZQ"))
    assert good.env == "production"


def test_the_admin_listener_is_off_or_on_loopback_and_never_the_public_port() -> None:
    settings = GatewaySettings(auth="dev", env="development")
    assert (settings.admin_port, settings.admin_host) == (0, "127.0.0.1")
    with pytest.raises(ValueError, match="must differ from TOKENWIRE_GATEWAY_PORT"):
        GatewaySettings(auth="dev", env="development", gateway_port=8000, admin_port=8000)
