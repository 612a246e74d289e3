"""Typed settings from environment variables prefixed ``ACLAUDIT_``."""

from functools import lru_cache

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url


def normalise_database_url(url: str) -> str:
    """Map a plain database URL onto the async driver aclaudit uses for it."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    if url.startswith(("postgresql+psycopg2://", "postgresql+psycopg://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    if url.startswith("sqlite://") and not url.startswith("sqlite+aiosqlite://"):
        return "sqlite+aiosqlite://" + url.split("://", 1)[1]
    return url


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ACLAUDIT_", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///./aclaudit.db"
    # Seconds a connection waits for a database lock before the request fails closed.
    database_timeout: float = 5.0
    metrics_open: bool = False
    # Serve /docs, /redoc and /openapi.json without a token (local use); closed, they need a
    # valid token of any scope.
    open_docs: bool = False
    # The access log writes a checkpoint (head hash and count) every this many entries.
    checkpoint_every: int = Field(default=1000, ge=1)
    # HMAC key for checkpoints; without it checkpoints are unsigned and must be anchored by
    # copying them out of the service (GET /v1/access-log/checkpoints).
    checkpoint_key: SecretStr | None = None
    # Checkpoints at or after this entry id must carry a valid signature. Raise it past the
    # log's last entry when the key is first set on a log that already has unsigned checkpoints
    # (they were written without a key); any signed checkpoint still covers every entry before it.
    checkpoint_key_since: int = Field(default=1, ge=1)
    # Most checks that share one access-log transaction (group commit).
    max_group_commit: int = Field(default=1000, ge=1, le=10_000)
    # Largest request body read (413 beyond it, before it is buffered): the largest valid check
    # batch is under 8 MiB; large policy documents are what may need more.
    max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=64 * 1024)
    # A worker whose access log can no longer be made durable (a failed fsync: it refuses every
    # check until it restarts) stops itself, so that its supervisor starts a fresh one.
    # `aclaudit serve` turns this on; an app embedded elsewhere keeps running, not ready.
    exit_on_log_failure: bool = False
    log_level: str = "INFO"
    # One JSON line per HTTP request (method, path, status, duration, request id).
    access_log: bool = True
    # The sweeper (one worker at a time) records grant expiry and reopens lapsed acceptances
    # this often, and verifies the access log's hash chain every integrity interval (0: never).
    sweeper_enabled: bool = True
    sweep_interval_seconds: float = Field(default=2.0, gt=0, le=3600)
    integrity_interval_seconds: float = Field(default=300.0, ge=0)
    # A chain that still fails verify is alerted again (log.integrity_failed) this often, per
    # process; a new failure at once.
    integrity_realert_seconds: float = Field(default=3600.0, gt=0)

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        url = normalise_database_url(value.strip())
        if not url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError(
                "ACLAUDIT_DATABASE_URL must be a sqlite:/// or postgresql:// URL, "
                f"got {value.split('://', 1)[0]}://..."
            )
        return url

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in {"CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"}:
            raise ValueError("ACLAUDIT_LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return level

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def sqlite_file(self) -> str | None:
        """The SQLite database's file (None on PostgreSQL, or for an in-memory database)."""
        if not self.is_sqlite:
            return None
        database = make_url(self.database_url).database
        return database if database and database != ":memory:" else None

    @property
    def checkpoint_key_bytes(self) -> bytes | None:
        key = self.checkpoint_key
        return key.get_secret_value().encode() if key else None


@lru_cache
def get_settings() -> Settings:
    return Settings()
