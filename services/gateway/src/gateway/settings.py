"""Gateway settings (`TOKENWIRE_*`)."""

import json
import logging
import secrets
from typing import Annotated, Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from shared.settings import TokenwireSettings, placeholder

log = logging.getLogger(__name__)
MIN_SECRET_BYTES = 32


class GatewaySettings(TokenwireSettings):
    gateway_host: str = "127.0.0.1"
    """Bind address (`0.0.0.0` in containers)."""
    gateway_port: int = 8000
    """The public port: WebSocket, event streams, REST, the chat page."""
    admin_host: str = "127.0.0.1"
    """Where the admin listener binds: loopback by default, a private network's address when
    a scraper on another host reads it (compose: `0.0.0.0`, its port not published)."""
    admin_port: int = Field(default=0, ge=0, le=65535)
    """A second listener on which `/metrics`, `/ops` and `/v1/ops/stats` need no token; 0: none.
    On the public port they need an administrator's token."""
    redis_url: str = "redis://127.0.0.1:6379/0"
    """Redis or Valkey: admission, limits, presence, revocations."""
    auth: Literal["jwt", "dev"] = "jwt"
    """`dev` adds `POST /v1/auth/dev-token`, which mints a token for a new anonymous user."""
    jwt_secret: SecretStr | None = None
    """HS256 key, at least 32 bytes. Required with `auth=jwt`; in dev mode a random one is made."""
    jwt_jwks_url: str | None = None
    """Also accept RS256 tokens of an identity provider whose keys this JWKS URL serves."""
    jwt_issuer: str | None = None
    """With `jwt_jwks_url`: the `iss` external tokens must carry (unchecked when unset)."""
    jwt_audience: str | None = None
    """With `jwt_jwks_url`: the `aud` external tokens must carry (unchecked when unset)."""
    token_ttl_s: int = Field(default=24 * 3600, gt=0)
    """Lifetime of the tokens `POST /v1/auth/dev-token` mints."""
    revocations_keep_s: int = Field(default=30 * 24 * 3600, gt=0)
    """How long a revocation is kept when the revoked tokens' expiry is not known (a user's
    tokens, a token revoked without `expires_at`): longer than any token lives."""
    revocations_refresh_s: float = Field(default=30.0, gt=0)
    """How often a gateway reads the stored revocations again and checks its open sockets
    (announcements on the broker close them at once; this catches one it missed)."""
    max_frame_bytes: int = Field(default=64 * 1024, ge=1024)
    """Largest client frame; a bigger one closes the socket with 1009."""
    rpc_timeout_s: float = Field(default=3.0, gt=0)
    """How long persistence and the stream may take to answer."""
    send_queue_frames: int = Field(default=10_000, ge=16)
    """Events queued for one slow client (merged as they wait) before it is closed with 1013."""
    ws_ping_interval_s: float = Field(default=20.0, gt=0)
    """Idle connections are pinged this often, and closed if no pong comes within the timeout."""
    ws_ping_timeout_s: float = Field(default=20.0, gt=0)
    """A socket that does not answer a ping within this long is closed."""
    ws_sndbuf_bytes: int = Field(default=0, ge=0)
    """Kernel send buffer per connection (SO_SNDBUF); 0 keeps the system's default. Smaller
    bounds memory per client and lets backpressure reach the merging sooner."""
    presence_ttl_s: float = Field(default=30.0, ge=3)
    """A connection's presence entry lives this long unless refreshed (every third of it)."""
    session_cache_s: float = Field(default=5.0, ge=0)
    """How long a session's membership is cached by the gateway."""
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Browser origins allowed to open sockets besides the gateway's own (JSON list or comma
    separated). In dev mode any localhost origin is allowed too."""
    sse_heartbeat_s: float = Field(default=15.0, gt=0)
    """An event stream (`GET /v1/sessions/{sid}/events`) with nothing to send sends a comment
    this often, so that proxies and load balancers keep it open."""
    message_rate_per_min: float = Field(default=20.0, gt=0)
    """A user's messages per minute (a token bucket; the burst is the same number)."""
    max_connections_per_user: int = Field(default=20, ge=1)
    """Open sockets and event streams per user, across gateways."""
    nats_monitor_url: str | None = None
    """nats-server's monitoring endpoint (e.g. `http://nats:8222`): with it, `/metrics` also
    counts the workers connected to the broker."""
    broker_view_every_s: float = Field(default=5.0, gt=0)
    """How often the broker's queue depths are read for `/metrics`."""
    max_replies_per_session: int = Field(default=4, ge=1)
    """Replies asked for and not yet ended in one session (matters with policy `parallel`)."""
    unserved_timeout_s: float = Field(default=60.0, ge=0)
    """How long a message stored while no worker serves its model waits for one before its
    reply ends with `stream_error` `no_worker` (0: it waits as long as the stream keeps it)."""

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [part.strip().rstrip("/") for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _ports(self) -> Self:
        if self.admin_port and self.admin_port == self.gateway_port:
            raise ValueError(
                "TOKENWIRE_ADMIN_PORT must differ from TOKENWIRE_GATEWAY_PORT: "
                "the admin listener opens the ops endpoints without a token"
            )
        return self

    @model_validator(mode="after")
    def _production(self) -> Self:
        if self.env == "production":
            if self.auth == "dev":
                raise ValueError(
                    "TOKENWIRE_AUTH=dev is refused in production "
                    "(set TOKENWIRE_ENV=development to develop)"
                )
            if placeholder(self.jwt_secret):
                raise ValueError(
                    "TOKENWIRE_JWT_SECRET looks like a placeholder; generate one, "
                    "e.g. `openssl rand -base64 48`"
                )
        return self

    @model_validator(mode="after")
    def _secret(self) -> Self:
        if self.jwt_secret is None:
            if self.auth != "dev":
                if self.jwt_jwks_url:
                    return self
                raise ValueError(
                    "TOKENWIRE_JWT_SECRET or TOKENWIRE_JWT_JWKS_URL is required "
                    "(or TOKENWIRE_AUTH=dev)"
                )
            log.warning("dev auth without TOKENWIRE_JWT_SECRET: tokens die with this process")
            object.__setattr__(self, "jwt_secret", SecretStr(secrets.token_urlsafe(48)))
        elif len(self.jwt_secret.get_secret_value().encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"TOKENWIRE_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes")
        return self

    @property
    def secret(self) -> str | None:
        """The HS256 key; always set in dev mode."""
        return self.jwt_secret.get_secret_value() if self.jwt_secret else None
