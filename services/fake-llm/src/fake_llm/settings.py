"""Fake model settings: `TOKENWIRE_FAKE_LLM_*` environment variables."""

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

FailMode = Literal["none", "429", "500", "drop"]


class FakeLLMSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TOKENWIRE_FAKE_LLM_", extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    """Bind address."""
    port: int = 8100
    """Port."""
    model: str = "tokenwire-fake"
    """The model name it reports when a request names none."""
    ttft_ms: float = Field(default=200.0, ge=0)
    """Delay before the first content chunk."""
    token_delay_ms: float = Field(default=30.0, ge=0)
    """Delay between content chunks."""
    reply_tokens: int = Field(default=40, ge=1, le=100_000)
    """Content chunks per reply."""
    fail: FailMode = "none"
    """Failure injected into a `fail_rate` share of requests."""
    fail_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    """Share of requests that get `FAIL`."""
    fail_after_tokens: int = Field(default=3, ge=0)
    """With `fail=drop`: content chunks sent before the connection is cut."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """The least severe log records written."""
