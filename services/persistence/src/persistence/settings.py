"""Persistence settings (`TOKENWIRE_*`)."""

from pydantic import Field

from shared.settings import TokenwireSettings


class PersistenceSettings(TokenwireSettings):
    database_url: str = "sqlite+aiosqlite:///./tokenwire.db"
    """SQLAlchemy async URL: `sqlite+aiosqlite:///path` or `postgresql+asyncpg://…`."""
    batch_size: int = Field(default=100, ge=1, le=1000)
    """Most events written in one transaction when they arrive in a burst."""
    retry_delay_s: float = Field(default=2.0, gt=0)
    """Redelivery delay after a database failure; the events are kept, never dropped."""
