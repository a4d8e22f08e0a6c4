"""Settings read from the environment (and `python -m app` flags): every knob and limit, once."""

from __future__ import annotations

from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEV_ORIGINS = [f"http://localhost:{port}" for port in range(5173, 5178)]


def _per_second(default: float, what: str) -> Any:
    return Field(default=default, gt=0, description=f"{what}: events per second per connection")


def _burst(default: float, what: str) -> Any:
    return Field(default=default, ge=1, description=f"{what}: burst allowed above the rate")


class Settings(BaseSettings):
    """Every knob of the server; environment names are upper-case field names."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", populate_by_name=True)

    host: str = Field(default="0.0.0.0", description="address to listen on")
    port: int = Field(default=5000, ge=0, le=65535, description="port to listen on")
    store_url: str | None = Field(
        default=None,
        description="the store: sqlite:///path/sessions.sqlite3, mongodb://... or "
        "postgresql://... (unset: MONGODB_URI, else SQLite in DATA_DIR)",
    )
    mongodb_uri: str | None = Field(default=None, description="set: store in MongoDB")
    mongodb_db: str = Field(default="codecollab", description="MongoDB database name")
    data_dir: Path = Field(default=Path("./data"), description="where the SQLite file lives")
    redis_url: str | None = Field(
        default=None, description="set: cluster mode, processes share rooms through this Redis"
    )
    cluster_shared_sqlite: bool = Field(
        default=False,
        description="cluster mode on SQLite: every process on one machine, one DATA_DIR",
    )
    cluster_process_lease_seconds: float = Field(
        default=6.0, gt=0, description="a process silent this long is taken for dead"
    )
    cluster_writer_lease_seconds: float = Field(
        default=10.0, gt=0, description="a room's writer silent this long is replaced"
    )

    session_ttl_seconds: float = Field(
        default=604_800, gt=0, description="a session expires this long after its last activity"
    )
    save_debounce_seconds: float = Field(
        default=2.0, ge=0, description="write a room after this long without changes"
    )
    save_max_delay_seconds: float = Field(
        default=10.0, ge=0, description="... and at least this often while changes go on"
    )
    purge_interval_seconds: float = Field(
        default=60.0, gt=0, description="how often expired sessions are purged"
    )
    room_idle_seconds: float = Field(
        default=600.0, ge=0, description="an empty room stays in memory this long"
    )
    reconnect_grace_seconds: float = Field(
        default=30.0, ge=0, description="a dropped member's departure is held this long"
    )
    call_reconnect_seconds: float = Field(
        default=30.0, ge=0, description="a dropped call participant is kept in the call this long"
    )
    chat_store_timeout_seconds: float = Field(
        default=5.0, gt=0, description="longest wait for chat/language to be stored"
    )
    store_retry_max_seconds: float = Field(
        default=5.0, gt=0, description="cap of the writer's exponential backoff"
    )
    store_timeout_seconds: float = Field(
        default=3.0, gt=0, description="MongoDB server-selection, connect and socket timeouts"
    )
    shutdown_flush_seconds: float = Field(
        default=20.0, gt=0, description="longest wait for pending writes at shutdown"
    )
    merge_history_versions: int = Field(
        default=100, ge=1, description="changes of a text kept for merging, at least"
    )
    merge_history_seconds: float = Field(
        default=30.0, ge=0, description="... and every change of this many last seconds"
    )

    frontend_url: str | None = Field(default=None, description="one more allowed origin")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEV_ORIGINS),
        description="comma-separated origins allowed for REST and Socket.IO (* for any)",
    )

    max_room_id_length: int = Field(default=64, ge=1, description="room id characters")
    max_user_name_length: int = Field(default=100, ge=1, description="user name characters")
    max_user_id_length: int = Field(default=128, ge=1, description="user id characters")
    max_code_bytes: int = Field(default=1_048_576, ge=1, description="code size, UTF-8 bytes")
    max_chat_length: int = Field(default=4000, ge=1, description="chat message characters")
    max_cursor_bytes: int = Field(default=1024, ge=2, description="cursor position, JSON bytes")
    max_clients_per_room: int = Field(
        default=50, ge=1, description="sockets in one room (and in one meeting)"
    )
    max_files_per_room: int = Field(default=50, ge=1, description="files in one room")
    max_file_bytes: int = Field(default=1_048_576, ge=1, description="one file, UTF-8 bytes")
    max_room_files_bytes: int = Field(
        default=8_388_608, ge=1, description="all files of a room together, UTF-8 bytes"
    )
    max_file_id_length: int = Field(default=255, ge=1, description="file id characters")
    max_whiteboard_bytes: int = Field(
        default=1_048_576, ge=2, description="whiteboard snapshot, JSON bytes"
    )
    max_signal_bytes: int = Field(
        default=65_536, ge=2, description="one WebRTC offer, answer or candidate, JSON bytes"
    )

    rate_code_per_second: float = _per_second(60.0, "code and file text changes")
    rate_code_burst: float = _burst(120.0, "code and file text changes")
    rate_chat_per_second: float = _per_second(5.0, "chat messages")
    rate_chat_burst: float = _burst(10.0, "chat messages")
    rate_cursor_per_second: float = _per_second(30.0, "cursor and typing events")
    rate_cursor_burst: float = _burst(30.0, "cursor and typing events")
    rate_join_per_second: float = _per_second(10.0, "joins, leaves, state requests")
    rate_join_burst: float = _burst(10.0, "joins, leaves, state requests")
    rate_file_per_second: float = _per_second(20.0, "file opens, requests, switches")
    rate_file_burst: float = _burst(40.0, "file opens, requests, switches")
    rate_upload_per_second: float = _per_second(2.0, "file uploads")
    rate_upload_burst: float = _burst(5.0, "file uploads")
    rate_whiteboard_per_second: float = _per_second(10.0, "whiteboard events")
    rate_whiteboard_burst: float = _burst(20.0, "whiteboard events")
    rate_call_per_second: float = _per_second(10.0, "call, screen-share, hand events")
    rate_call_burst: float = _burst(20.0, "call, screen-share, hand events")
    rate_context_per_second: float = _per_second(5.0, "user context changes")
    rate_context_burst: float = _burst(20.0, "user context changes")
    rate_signal_per_second: float = _per_second(50.0, "WebRTC signalling")
    rate_signal_burst: float = _burst(200.0, "WebRTC signalling")
    flood_disconnect_seconds: float = Field(
        default=10.0, gt=0, description="a connection over its rate this long is disconnected"
    )
    max_connections_per_address: int = Field(
        default=200, ge=1, description="concurrent sockets per client address"
    )
    new_connections_per_minute: int = Field(
        default=600, ge=1, description="new sockets per client address per minute"
    )
    rest_requests_per_minute: int = Field(
        # The unchanged editor auto-saves about 45 times a minute per open tab, idle or not:
        # 13 tabs behind one address reach this (raise it for a class behind one NAT).
        default=600,
        ge=1,
        description="REST requests per client address per minute",
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated addresses/CIDRs whose X-Forwarded-For is believed",
    )

    websocket_compression: bool = Field(default=False, description="per-message deflate")
    slow_client_packets: int = Field(
        default=1000,
        ge=1,
        description="packets waiting for one client (its connection not read) that make it slow",
    )
    slow_client_seconds: float = Field(
        default=10.0, gt=0, description="a client slow this long is disconnected"
    )
    ping_interval_seconds: int = Field(
        default=25, ge=1, description="Engine.IO heartbeat: a PING this long after each PONG"
    )
    ping_timeout_seconds: int = Field(
        default=20, ge=1, description="a client that has not answered a PING this long is gone"
    )
    try_page: bool = Field(default=True, description="serve the try-it page at /")
    stats_interval_seconds: float = Field(
        default=60.0, ge=0, description="log a one-line summary this often (0: never)"
    )
    admin_ui_password: str | None = Field(
        default=None,
        description="set: the Socket.IO Admin UI (https://admin.socket.io) may watch, read-only",
    )
    admin_ui_username: str = Field(default="admin", description="the Admin UI's login name")
    metrics_enabled: bool = Field(default=False, description="serve Prometheus metrics at /metrics")
    metrics_token: str | None = Field(
        default=None,
        description="serve /metrics only to `Authorization: Bearer <token>` (enables it)",
    )
    checkpoint_interval_seconds: float = Field(
        default=600.0,
        ge=0,
        description="an automatic checkpoint this often while a room is "
        "worked on (0: none; one is also made when the last person leaves)",
    )
    history_retention_days: float = Field(
        default=30.0,
        gt=0,
        description="changes older than this are folded into a snapshot "
        "(checkpoints are kept as long as their session)",
    )
    auth_mode: Literal["open", "optional", "required"] = Field(
        default="open",
        description="open: the room id is the key; optional: tokens make owners and private "
        "rooms; required: every socket and REST call needs a token",
    )
    jwt_secret: str | None = Field(
        default=None, description="HS256 key of the tokens (the original backend's JWT_SECRET)"
    )
    jwt_jwks_url: str | None = Field(
        default=None, description="RS256/ES256 tokens: where their public keys are (JWKS)"
    )
    jwt_jwks_cache_seconds: float = Field(
        default=300.0, gt=0, description="how long keys fetched from JWT_JWKS_URL are kept"
    )
    jwt_issuer: str | None = Field(default=None, description="set: tokens must have this `iss`")
    jwt_audience: str | None = Field(default=None, description="set: tokens must have this `aud`")
    jwt_leeway_seconds: float = Field(
        default=0.0, ge=0, le=300, description="clock skew allowed on `exp` and `nbf`"
    )
    admin_token: str | None = Field(
        default=None, description="a bearer token that may do anything over REST (operators)"
    )
    invite_secret: str | None = Field(
        default=None,
        description="the key invite tokens are signed with (default: JWT_SECRET); the same on "
        "every process",
    )
    max_invite_seconds: float = Field(
        default=30 * 86400.0, gt=0, description="the longest an invite may be valid"
    )
    max_room_members: int = Field(
        default=1000, ge=1, description="members (with a role) of one room"
    )
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR")
    log_format: Literal["text", "json"] = Field(
        default="text", description="text, or json (one object per line)"
    )

    @field_validator("log_level")
    @classmethod
    def known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return level

    @field_validator("cors_origins", "trusted_proxies", mode="before")
    @classmethod
    def split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @model_validator(mode="after")
    def keys_for_tokens(self) -> Settings:
        if self.auth_mode != "open" and not (self.jwt_secret or self.jwt_jwks_url):
            raise ValueError(f"AUTH_MODE={self.auth_mode} needs JWT_SECRET or JWT_JWKS_URL")
        if self.auth_mode != "open" and not (self.invite_secret or self.jwt_secret):
            raise ValueError("with JWT_JWKS_URL alone, set INVITE_SECRET (invites are signed)")
        return self

    def event_rates(self) -> dict[str, tuple[float, float]]:
        """Per event family: (events per second, burst), from every `rate_<family>_*` pair."""
        rates: dict[str, tuple[float, float]] = {}
        for name in type(self).model_fields:
            if name.startswith("rate_") and name.endswith("_per_second"):
                family = name[len("rate_") : -len("_per_second")]
                rates[family] = (getattr(self, name), getattr(self, f"rate_{family}_burst"))
        return rates

    def allowed_origins(self) -> list[str] | str:
        """The CORS origins, `*` standing for any; FRONTEND_URL is always allowed."""
        origins = list(self.cors_origins)
        if self.frontend_url and self.frontend_url not in origins:
            origins.append(self.frontend_url)
        return "*" if "*" in origins else origins

    @property
    def ttl(self) -> timedelta:
        return timedelta(seconds=self.session_ttl_seconds)

    @property
    def max_http_body_bytes(self) -> int:
        """Largest legal REST body: a whole text after JSON escaping, plus room for the rest."""
        # Every UTF-8 byte of text can grow to a six-character \uXXXX escape in JSON.
        return max(self.max_code_bytes, self.max_file_bytes) * 6 + 64 * 1024

    @property
    def max_message_bytes(self) -> int:
        """Largest legal Socket.IO message: a text or a whiteboard snapshot, escaped."""
        largest = max(self.max_code_bytes, self.max_file_bytes, self.max_whiteboard_bytes)
        return largest * 6 + 64 * 1024


@cache
def default_settings() -> Settings:
    """The defaults alone (no environment): the limits of a payload validated without context."""
    return Settings.model_construct()
