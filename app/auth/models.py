from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime


class ApiToken(Base):
    """A bearer token of the service's own API; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class TrailEntry(Base):
    """One authorised request to a mutating or audit-sensitive endpoint; or `count` requests
    refused before their caller was authorised, written together (`app.auth.refusals`)."""

    __tablename__ = "admin_trail"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    # the token's name, or a person's principal (`user:<id>`) when `issuer` is set
    token_name: Mapped[str | None] = mapped_column(String(160), nullable=True)
    method: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(Text)
    query: Mapped[str] = mapped_column(Text)
    status: Mapped[int] = mapped_column(Integer)
    request_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    token_id: Mapped[int | None] = mapped_column(
        ForeignKey("api_tokens.id", ondelete="SET NULL"), nullable=True
    )
    count: Mapped[int] = mapped_column(Integer, server_default="1")
    # The OpenID Connect provider that signed the person's token in (None for static tokens).
    issuer: Mapped[str | None] = mapped_column(String(512), nullable=True)
    # The trail's hash chain (`app.chain.TRAIL_FIELDS`); ids come from its head.
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class TrailHead(Base):
    """The trail's newest id and hash (one row; signed when a checkpoint key is set); locked
    by every transaction that adds a trail entry."""

    __tablename__ = "admin_trail_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_id: Mapped[int] = mapped_column(Integer)
    last_hash: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str | None] = mapped_column(String(64), nullable=True)
