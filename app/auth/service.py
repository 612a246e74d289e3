"""Tokens: creation, authentication, scope checks."""

import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncSession

from app import chain, policy_version
from app.auth import repository
from app.auth.models import ApiToken, TrailEntry, TrailHead
from app.auth.scopes import Scope
from app.db import chain_key, utcnow
from app.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated

TOKEN_PREFIX = "acl_"
UNKNOWN_TOKEN = "the token is unknown or revoked"
TOKEN_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}\Z")  # \Z: no trailing newline


@dataclass(frozen=True)
class Caller:
    """Who is calling: a static token (`token_id`, its `name`), or a person signed in with the
    company's OpenID Connect provider (`name` is their principal ``user:<id>``, `issuer` the
    provider; no token row)."""

    token_id: int | None
    name: str
    scopes: frozenset[str]
    issuer: str | None = None

    @property
    def is_person(self) -> bool:
        return self.issuer is not None

    @property
    def key(self) -> object:
        """Tells callers apart (one turn each in `app.fairness`)."""
        return self.token_id if self.issuer is None else (self.issuer, self.name)

    def has_scope(self, scope: Scope) -> bool:
        return scope.value in self.scopes or Scope.admin.value in self.scopes


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_token(session: AsyncSession, *, name: str, scopes: list[str]) -> str:
    """Store a new token's hash and return the token itself (shown once)."""
    if not TOKEN_NAME_RE.match(name):
        raise InvalidInput("name", "must match [A-Za-z0-9][A-Za-z0-9._@-]{0,127}")
    valid = {s.value for s in Scope}
    unknown = [s for s in scopes if s not in valid]
    if unknown or not scopes:
        raise InvalidInput("scope", f"each scope must be one of {sorted(valid)}")
    if await repository.get_token_by_name(session, name) is not None:
        raise Conflict(f"a token named {name!r} already exists; pick another name")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(
        ApiToken(
            name=name,
            token_hash=hash_token(token),
            scopes=sorted(set(scopes)),
            created_at=utcnow(),
        )
    )
    await session.flush()
    return token


async def revoke_token(session: AsyncSession, *, name: str) -> None:
    token = await repository.get_token_by_name(session, name)
    if token is None or token.revoked_at is not None:
        raise NotFound(f"no active token named {name!r}")
    await policy_version.advance(session)  # every cached copy is revalidated before next use
    token.revoked_at = utcnow()
    await session.flush()


async def authenticate(session: AsyncSession, authorization: str | None) -> Caller:
    if not authorization:
        raise Unauthenticated("send Authorization: Bearer <token>")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("send Authorization: Bearer <token>")
    row = await repository.get_token_by_hash(session, hash_token(token.strip()))
    if row is None or row.revoked_at is not None:
        raise Unauthenticated(UNKNOWN_TOKEN)
    return Caller(token_id=row.id, name=row.name, scopes=frozenset(row.scopes))


def require(caller: Caller, scope: Scope) -> Caller:
    if not caller.has_scope(scope):
        raise Forbidden(f"this endpoint needs the {scope.value!r} scope")
    return caller


_HEAD = "aclaudit_trail_head"  # Session.info: (root transaction, the head it locked)


async def _locked_head(session: AsyncSession) -> TrailHead:
    """The trail's head, locked once per transaction: a group commit's entries (one per
    request of the batch) chain onto it one after another without asking again."""
    transaction = session.sync_session.get_transaction()
    held = session.info.get(_HEAD)
    # (an entry rolled back with a savepoint expires the head: it is read again)
    if held is not None and held[0] is transaction and not inspect(held[1]).unloaded:
        head: TrailHead = held[1]
        return head
    head = await repository.lock_trail_head(session)
    session.info[_HEAD] = (transaction, head)
    return head


async def record_trail(
    session: AsyncSession,
    *,
    token_name: str | None,
    token_id: int | None,
    method: str,
    path: str,
    query: str,
    status: int,
    request_id: str | None,
    count: int = 1,
    issuer: str | None = None,
) -> None:
    """Append a trail entry, chained onto the trail's head (locked until the caller commits:
    briefly, as the entry is the transaction's last write; the wait is bounded by the
    database's lock timeout)."""
    head = await _locked_head(session)
    row: dict[str, Any] = {
        "id": head.last_id + 1,
        "at": utcnow(),
        "token_name": token_name,
        "method": method,
        "path": path,
        "query": query,
        "status": status,
        "request_id": request_id,
        "count": count,
        "prev_hash": head.last_hash,
    }
    if issuer is not None:
        row["issuer"] = issuer
    row["hash"] = chain.record_hash(head.last_hash, chain.TRAIL_FIELDS, row)
    session.add(TrailEntry(token_id=token_id, **row))
    key = chain_key(session)
    head.last_id, head.last_hash = row["id"], row["hash"]
    head.signature = (
        chain.sign_head(key, chain.ADMIN_TRAIL, row["id"], row["hash"]) if key else None
    )
