from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.policy.casbin_model import ANY_PURPOSE, Rule
from app.policy.models import Grant
from app.policy.schemas import GrantStatus


async def get(session: AsyncSession, grant_id: int) -> Grant | None:
    return await session.get(Grant, grant_id)


async def add(session: AsyncSession, grant: Grant) -> Grant:
    session.add(grant)
    await session.flush()
    return grant


async def list_page(
    session: AsyncSession,
    *,
    principal: str | None,
    resource: str | None,
    action: str | None,
    status: GrantStatus | None,
    now: datetime,
    after_id: int | None,
    limit: int,
) -> Sequence[Grant]:
    query = select(Grant).order_by(Grant.id).limit(limit)
    if after_id is not None:
        query = query.where(Grant.id > after_id)
    if principal is not None:
        query = query.where(Grant.principal == principal)
    if resource is not None:
        query = query.where(Grant.resource == resource)
    if action is not None:
        query = query.where(Grant.action == action)
    if status is GrantStatus.revoked:
        query = query.where(Grant.revoked_at.is_not(None))
    elif status is GrantStatus.expired:
        query = query.where(Grant.revoked_at.is_(None), Grant.expires_at <= now)
    elif status is None:
        query = query.where(Grant.revoked_at.is_(None))
    elif status is GrantStatus.active:
        query = query.where(
            Grant.revoked_at.is_(None), or_(Grant.expires_at.is_(None), Grant.expires_at > now)
        )
    return (await session.execute(query)).scalars().all()


def rule_of(
    principal: str,
    resource: str,
    action: str,
    effect: str,
    expires_at: datetime | None,
    grant_id: int,
    purpose: str = ANY_PURPOSE,
) -> Rule:
    """A grant's Casbin ``p`` rule for one purpose (its expiry as unix seconds, "" for none)."""
    exp = "" if expires_at is None else repr(expires_at.timestamp())
    return Rule(principal, resource, str(action), str(effect), exp, str(grant_id), purpose)


def rules_of(
    principal: str,
    resource: str,
    action: str,
    effect: str,
    expires_at: datetime | None,
    grant_id: int,
    purposes: Sequence[str] | None,
) -> tuple[Rule, ...]:
    """A grant's Casbin ``p`` rules: one per purpose (None or none: any purpose)."""
    exp = "" if expires_at is None else repr(expires_at.timestamp())
    return tuple(
        Rule(principal, resource, str(action), str(effect), exp, str(grant_id), purpose)
        for purpose in dict.fromkeys(purposes or (ANY_PURPOSE,))
    )


async def unrevoked_rules(session: AsyncSession) -> list[Rule]:
    """Every unrevoked grant as its rule, from plain rows: what a policy snapshot needs (ORM
    objects cost two to five times the query for 50k grants)."""
    query = (
        select(
            Grant.principal,
            Grant.resource,
            Grant.action,
            Grant.effect,
            Grant.expires_at,
            Grant.id,
            Grant.purposes,
        )
        .where(Grant.revoked_at.is_(None))
        .order_by(Grant.id)
    )
    return [rule for row in (await session.execute(query)).all() for rule in rules_of(*row)]


async def list_unrevoked(session: AsyncSession) -> Sequence[Grant]:
    """Every grant the enforcer holds (expired ones included: the model ignores them)."""
    query = select(Grant).where(Grant.revoked_at.is_(None)).order_by(Grant.id)
    return (await session.execute(query)).scalars().all()


async def list_lapsed(
    session: AsyncSession, now: datetime, *, limit: int | None = None
) -> Sequence[Grant]:
    """Grants past their ``expires_at`` whose expiry has not been recorded yet (the `limit`
    first by id)."""
    query = (
        select(Grant)
        .where(
            Grant.revoked_at.is_(None),
            Grant.expired_at.is_(None),
            Grant.expires_at.is_not(None),
            Grant.expires_at <= now,
        )
        .order_by(Grant.id)
        .limit(limit)
    )
    return (await session.execute(query)).scalars().all()
