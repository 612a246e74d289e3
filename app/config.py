"""Typed settings from environment variables prefixed ``ACLAUDIT_``."""

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Self
from urllib.parse import urlsplit

from fastapi import Depends, Request
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from app.auth.scopes import Scope

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def is_allowed_issuer_url(url: str) -> bool:
    """An OpenID Connect URL the service will fetch keys from: https, or http on loopback (for
    development and tests: `aclaudit dev-idp`)."""
    parts = urlsplit(url)
    if not parts.hostname:
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS)


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
    # The Casbin model file checked at start (unset: the one shipped with the package, which
    # policies/model.conf links to); the service refuses to start unless it is the model that
    # its decision index implements.
    casbin_model: Path | None = None
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
    # PostgreSQL: entries per access-log partition (the log is partitioned by entry id; see
    # app.accesslog.partitions). Partitions are made ahead of the head by the sweeper, and
    # `aclaudit log archive` drops whole ones. A change applies to partitions made after it.
    log_partition_entries: int = Field(default=1_000_000, ge=1)
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
    # An allow grant (read or export) no allowed read went through for this many days, counting
    # from the later of its creation and its last use, has an `unused` finding (the sweeper).
    unused_after_days: int = Field(default=90, ge=1, le=36_500)
    # A chain that still fails verify is alerted again (log.integrity_failed) this often, per
    # process; a new failure at once.
    integrity_realert_seconds: float = Field(default=3600.0, gt=0)
    # A principal's reads of one dataset from outside its audience raise one
    # read.out_of_audience alert per window of this many seconds (windows aligned to the Unix
    # epoch), whose `count` says how many reads it stands for; 0: an alert for every read.
    # The access log keeps every read either way.
    read_alert_window_seconds: int = Field(default=3600, ge=0, le=7 * 86400)
    # Two-person control (`app.approvals`): a request not decided within this many seconds
    # expires; a change growing a block-guarded dataset's expanded intended audience by more
    # than this many principals needs an approval (every growth raises `audience.grown`).
    approval_ttl_seconds: int = Field(default=86400, ge=1, le=30 * 86400)
    audience_growth_approval: int = Field(default=10, ge=0)
    # People sign in with the company's OpenID Connect provider (docs/oidc.md): bearer JWTs
    # from this issuer for this audience are accepted next to static tokens.
    oidc_issuer: str | None = None
    # Requests a minute each person may make to /v1/me, per worker (429 past it).
    person_requests_per_minute: int = Field(default=120, ge=1, le=100_000)
    oidc_audience: str | None = None
    oidc_user_claim: str = "preferred_username"  # the person is user:<claim>
    oidc_groups_claim: str = "groups"
    # IdP group -> scopes, e.g. {"security-staff": ["audit:read", "alerts:read"]}
    oidc_scope_map: dict[str, list[str]] = Field(default_factory=dict)
    # Seconds allowed for clock skew on exp and nbf.
    oidc_leeway_seconds: float = Field(default=30.0, ge=0, le=300)
    # The IdP's keys are fetched again (a token names an unknown key, or they are older than
    # the maximum age) at most this often.
    oidc_jwks_refresh_seconds: float = Field(default=30.0, ge=5)
    # The IdP's keys are trusted this long (less if its JWKS answer's Cache-Control max-age
    # says so), then fetched again before use: a key it withdrew stops verifying. A failed
    # fetch keeps the old keys.
    oidc_jwks_max_age_seconds: float = Field(default=600.0, ge=5, le=86400)
    # Seconds an IdP fetch (discovery document, JWKS) may take.
    oidc_fetch_timeout_seconds: float = Field(default=5.0, gt=0, le=60)

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

    @field_validator("oidc_issuer")
    @classmethod
    def _secure_issuer(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()  # exactly as the tokens' iss says, a trailing "/" included
        if not is_allowed_issuer_url(value):
            raise ValueError(
                "ACLAUDIT_OIDC_ISSUER must be an https:// URL (http:// only on loopback: "
                "http://127.0.0.1:<port>, http://localhost)"
            )
        return value

    @field_validator("oidc_scope_map")
    @classmethod
    def _known_scopes(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        known = {s.value for s in Scope}
        unknown = sorted({s for scopes in value.values() for s in scopes} - known)
        if unknown:
            raise ValueError(
                f"ACLAUDIT_OIDC_SCOPE_MAP names unknown scopes {unknown}; "
                f"each must be one of {sorted(known)}"
            )
        return value

    @model_validator(mode="after")
    def _issuer_needs_audience(self) -> Self:
        if self.oidc_issuer is not None and not self.oidc_audience:
            raise ValueError("ACLAUDIT_OIDC_ISSUER needs ACLAUDIT_OIDC_AUDIENCE (the client id)")
        return self

    @property
    def is_oidc(self) -> bool:
        return self.oidc_issuer is not None

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


def request_settings(request: Request) -> Settings:
    """The settings of the app serving `request` (as `create_app` was given them)."""
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(request_settings)]
