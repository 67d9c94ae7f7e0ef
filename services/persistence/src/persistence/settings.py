"""Persistence settings (`TOKENWIRE_*`)."""

from typing import Self

from pydantic import Field, HttpUrl, SecretStr, model_validator

from shared.settings import TokenwireSettings, placeholder


class PersistenceSettings(TokenwireSettings):
    database_url: str = "sqlite+aiosqlite:///./tokenwire.db"
    """SQLAlchemy async URL: `sqlite+aiosqlite:///path` or `postgresql+asyncpg://…`."""
    batch_size: int = Field(default=100, ge=1, le=1000)
    """Most events written in one transaction when they arrive in a burst."""
    retry_delay_s: float = Field(default=2.0, gt=0)
    """Redelivery delay after a database failure; the events are kept, never dropped."""
    usage_webhook_url: HttpUrl | None = None
    """POST each reply's usage here (JSON, HMAC-signed), retried until it is taken."""
    usage_webhook_secret: SecretStr | None = None
    """HMAC-SHA256 key of `X-Tokenwire-Signature`; required with the URL."""
    usage_webhook_backoff_s: float = Field(default=1.0, gt=0)
    """First retry delay; doubles with each failed delivery of a record."""
    usage_webhook_backoff_max_s: float = Field(default=300.0, gt=0)
    """The longest wait between two tries of a webhook delivery."""
    usage_webhook_timeout_s: float = Field(default=10.0, gt=0)
    """How long the webhook's receiver may take to answer."""
    retention_days: float = Field(default=0, ge=0)
    """Sessions without a user message for this long are pruned (0: kept forever)."""
    retention_every_s: float = Field(default=3600.0, gt=0)
    """How often retention looks for sessions to prune."""

    @model_validator(mode="after")
    def _webhook_needs_a_secret(self) -> Self:
        if self.usage_webhook_url and self.usage_webhook_secret is None:
            raise ValueError("TOKENWIRE_USAGE_WEBHOOK_SECRET is required with the webhook URL")
        if self.env == "production" and placeholder(self.usage_webhook_secret):
            raise ValueError("TOKENWIRE_USAGE_WEBHOOK_SECRET looks like a placeholder")
        return self
