"""Settings read from the environment (and `python -m app` flags)."""

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEV_ORIGINS = [f"http://localhost:{port}" for port in range(5173, 5178)]


class Settings(BaseSettings):
    """Every knob of the server; environment names are upper-case field names."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", populate_by_name=True)

    host: str = "0.0.0.0"
    port: int = Field(default=5000, ge=0, le=65535)
    mongodb_uri: str | None = None
    mongodb_db: str = "codecollab"
    data_dir: Path = Path("./data")

    session_ttl_seconds: float = Field(default=604_800, gt=0)
    save_debounce_seconds: float = Field(default=2.0, ge=0)
    save_max_delay_seconds: float = Field(default=10.0, ge=0)
    purge_interval_seconds: float = Field(default=60.0, gt=0)
    room_idle_seconds: float = Field(default=600.0, ge=0)
    reconnect_grace_seconds: float = Field(default=30.0, ge=0)
    chat_store_timeout_seconds: float = Field(default=5.0, gt=0)
    store_retry_max_seconds: float = Field(default=5.0, gt=0)
    store_timeout_seconds: float = Field(default=3.0, gt=0)
    shutdown_flush_seconds: float = Field(default=20.0, gt=0)

    frontend_url: str | None = None
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(DEV_ORIGINS))

    max_room_id_length: int = Field(default=64, ge=1)
    max_user_name_length: int = Field(default=100, ge=1)
    max_user_id_length: int = Field(default=128, ge=1)
    max_code_bytes: int = Field(default=1_048_576, ge=1)
    max_chat_length: int = Field(default=4000, ge=1)
    max_cursor_bytes: int = Field(default=1024, ge=2)
    max_clients_per_room: int = Field(default=50, ge=1)

    rate_code_per_second: float = Field(default=60.0, gt=0)
    rate_code_burst: float = Field(default=120.0, ge=1)
    rate_chat_per_second: float = Field(default=5.0, gt=0)
    rate_chat_burst: float = Field(default=10.0, ge=1)
    rate_cursor_per_second: float = Field(default=30.0, gt=0)
    rate_cursor_burst: float = Field(default=30.0, ge=1)
    rate_join_per_second: float = Field(default=10.0, gt=0)
    rate_join_burst: float = Field(default=10.0, ge=1)
    flood_disconnect_seconds: float = Field(default=10.0, gt=0)
    max_connections_per_address: int = Field(default=200, ge=1)
    new_connections_per_minute: int = Field(default=600, ge=1)
    rest_requests_per_minute: int = Field(default=600, ge=1)
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)

    websocket_compression: bool = False
    log_level: str = "INFO"

    @field_validator("cors_origins", "trusted_proxies", mode="before")
    @classmethod
    def split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    def event_rates(self) -> dict[str, tuple[float, float]]:
        """Per event family: (events per second, burst)."""
        return {
            "code": (self.rate_code_per_second, self.rate_code_burst),
            "chat": (self.rate_chat_per_second, self.rate_chat_burst),
            "cursor": (self.rate_cursor_per_second, self.rate_cursor_burst),
            "join": (self.rate_join_per_second, self.rate_join_burst),
        }

    def allowed_origins(self) -> list[str] | str:
        """The CORS origins, `*` standing for any; FRONTEND_URL is always allowed."""
        origins = list(self.cors_origins)
        if self.frontend_url and self.frontend_url not in origins:
            origins.append(self.frontend_url)
        return "*" if "*" in origins else origins

    @property
    def max_http_body_bytes(self) -> int:
        """Largest legal body: a full code string after JSON escaping, plus room for the rest."""
        # Every UTF-8 byte of code can grow to a six-character \uXXXX escape in JSON.
        return self.max_code_bytes * 6 + 64 * 1024
