"""Grants: create, list, revoke. Every change advances the policy version first."""

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app import policy_version
from app.datasets import repository as datasets_repository
from app.datasets.schemas import SENSITIVE, Sensitivity
from app.db import read_snapshot, utcnow
from app.errors import InvalidInput, NotFound
from app.identifiers import Effect
from app.policy import casbin_export, repository
from app.policy.models import Grant
from app.policy.schemas import GrantCreate, GrantRead, GrantStatus
from app.policy.state import load_rows


def grant_status(grant: Grant, now: datetime) -> GrantStatus:
    if grant.revoked_at is not None:
        return GrantStatus.revoked
    if grant.expires_at is not None and grant.expires_at <= now:
        return GrantStatus.expired
    return GrantStatus.active


def to_read(grant: Grant, *, version: int | None = None) -> GrantRead:
    return GrantRead.model_validate(
        {
            **{c: getattr(grant, c) for c in GrantRead.model_fields if hasattr(grant, c)},
            "status": grant_status(grant, utcnow()),
            "policy_version": version,
        }
    )


async def create_grant(
    session: AsyncSession, *, body: GrantCreate, actor: str, field: str = "body"
) -> GrantRead:
    version = await policy_version.advance(session)
    now = utcnow()
    if body.expires_at is not None and body.expires_at <= now:
        raise InvalidInput(f"{field}.expires_at", "must be in the future")
    if body.effect is Effect.allow and not (body.justification or "").strip():
        covered = await datasets_repository.covered_by(session, body.resource)
        sensitive = sorted(d.id for d in covered if Sensitivity(d.sensitivity) in SENSITIVE)
        if sensitive:
            raise InvalidInput(
                f"{field}.justification",
                "required: this grant reaches confidential or restricted datasets "
                f"({', '.join(sensitive[:5])}{', ...' if len(sensitive) > 5 else ''})",
            )
    grant = await repository.add(
        session,
        Grant(
            principal=body.principal,
            resource=body.resource,
            action=body.action.value,
            effect=body.effect.value,
            purposes=list(body.purposes),
            expires_at=body.expires_at,
            justification=(body.justification or "").strip() or None,
            created_by=actor,
            created_at=now,
        ),
    )
    return to_read(grant, version=version)


async def get_grant(session: AsyncSession, grant_id: int) -> GrantRead:
    grant = await repository.get(session, grant_id)
    if grant is None:
        raise NotFound(f"grant {grant_id} does not exist")
    return to_read(grant)


async def revoke_grant(session: AsyncSession, *, grant_id: int, actor: str) -> GrantRead:
    version = await policy_version.advance(session)
    grant = await repository.get(session, grant_id)
    if grant is None or grant.revoked_at is not None:
        raise NotFound(f"grant {grant_id} does not exist or is already revoked")
    grant.revoked_at = utcnow()
    grant.revoked_by = actor
    await session.flush()
    return to_read(grant, version=version)


async def list_grants(
    session: AsyncSession,
    *,
    principal: str | None,
    resource: str | None,
    action: str | None,
    status: GrantStatus | None,
    after_id: int | None,
    limit: int,
) -> tuple[list[GrantRead], str | None]:
    rows = await repository.list_page(
        session,
        principal=principal,
        resource=resource,
        action=action,
        status=status,
        now=utcnow(),
        after_id=after_id,
        limit=limit + 1,
    )
    page = [to_read(g) for g in rows[:limit]]
    return page, (str(page[-1].id) if len(rows) > limit else None)


async def casbin_policy(session: AsyncSession) -> str:
    """The committed policy, as one snapshot, in Casbin's CSV format (`casbin_export`)."""
    await read_snapshot(session)
    version = await policy_version.current(session)
    rows = await load_rows(session)
    return casbin_export.render(version, rows.rules, rows.links)
