"""SCIM Users: the IdP's users as `user:<userName>` principals.

The resource is stored as the IdP last wrote it (validated, without id, meta and password);
its mapped columns (principal, externalId, displayName, active) are what filters query. Every
effect on the policy goes through `app.identity.provisioning`. Nothing here commits.
"""

import uuid
from typing import Any

from scim2_models import (
    Context,
    InvalidValueException,
    ListResponse,
    Meta,
    NotFoundException,
    SearchRequest,
    UniquenessException,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.identity import provisioning
from app.identity.models import ScimUser
from app.identity.scim import filters, repository
from app.identity.scim.mapping import user_principal
from app.identity.scim.protocol import (
    MAX_RESULTS,
    POLICY,
    UserList,
    UserModel,
    UserPatch,
    validate,
)

RESOURCE_TYPE = "User"
ENDPOINT = "Users"
# Kept out of the stored resource: ours (id, meta), computed (groups), or never kept (password).
NOT_STORED = ("id", "meta", "groups", "password")


def to_resource(row: ScimUser, base: str, user: UserModel | None = None) -> UserModel:
    """The resource of `row`; `user`: the model `row.resource` was stored from, shown without
    parsing the stored copy again (what is not stored left out)."""
    if user is None:
        user = UserModel.model_validate(row.resource, scim_policy=POLICY)
    else:
        user.password = user.groups = None  # (NOT_STORED: id and meta are set below)
    user.id = row.id
    user.meta = Meta(
        resource_type=RESOURCE_TYPE,
        created=row.created_at,
        last_modified=row.updated_at,
        location=f"{base}/{ENDPOINT}/{row.id}",
    )
    return user


def _stored(user: UserModel) -> dict[str, Any]:
    body = user.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
    return {key: value for key, value in body.items() if key not in NOT_STORED}


async def _require(session: AsyncSession, user_id: str) -> ScimUser:
    row = await repository.get_user(session, user_id)
    if row is None:
        raise NotFoundException(detail=f"no User with id {user_id!r}")
    return row


async def _require_free(session: AsyncSession, principal: str, user_name: str) -> None:
    taken = await repository.user_by_principal(session, principal)
    if taken is not None:
        raise UniquenessException(
            detail=f"userName {user_name!r} is taken: it is {principal}, User {taken.id}"
        )


async def get_user(session: AsyncSession, user_id: str, base: str) -> UserModel:
    return to_resource(await _require(session, user_id), base)


async def list_users(
    session: AsyncSession, search: SearchRequest[UserModel], base: str
) -> ListResponse[UserModel]:
    where = filters.where(search.filter, groups=False)
    count = MAX_RESULTS if search.count is None else min(search.count, MAX_RESULTS)
    offset = search.start_index_0 or 0
    total, rows = await repository.page_users(session, where, offset=offset, limit=count)
    return UserList(
        total_results=total,
        start_index=offset + 1,
        items_per_page=len(rows),
        resources=[to_resource(row, base) for row in rows],
    )


def creation(body: dict[str, Any]) -> UserModel:
    """The user a create request's `body` asks for, validated (a 400 before anything is
    written or queued)."""
    user = validate(UserModel, body, Context.RESOURCE_CREATION_REQUEST)
    if not user.user_name:  # (required by the schema)
        raise InvalidValueException(detail="userName is required")
    user_principal(user.user_name)  # (a userName that cannot be a principal: 400)
    return user


async def create_user(
    session: AsyncSession, user: UserModel, base: str, *, actor: str
) -> UserModel:
    """Create `user` (from `creation`). A new user changes no policy: no policy lock is taken,
    unless their name carries an `inactive` hold (a user of that name was deleted), which
    being active lifts (`provisioning.created_active`), or they are created inactive. Writes
    nothing when it raises."""
    assert user.user_name is not None  # (checked by `creation`)
    principal = user_principal(user.user_name)
    active = user.active = user.active is not False  # absent: active
    now = utcnow()
    row = ScimUser(  # (a value longer than its column is refused here)
        id=str(uuid.uuid4()),
        principal=principal,
        user_name=user.user_name,
        external_id=user.external_id,
        display_name=user.display_name,
        active=active,
        resource=_stored(user),
        created_at=now,
        updated_at=now,
    )
    if active:
        await _insert(session, row)
        # (in a group commit: once for the batch's creates, which fails the whole batch if
        # it fails)
        await provisioning.created_active(session, principal=principal, actor=actor)
    elif not await provisioning.is_active_as(session, principal=principal, active=False):
        async with session.begin_nested():  # a policy change: rolled back with the row
            await _insert(session, row)
            await provisioning.set_active(session, principal=principal, active=False, actor=actor)
    else:  # (an `inactive` hold on the name already)
        await _insert(session, row)
    return to_resource(row, base, user)


async def _insert(session: AsyncSession, row: ScimUser) -> None:
    if not await repository.insert_user(session, row):  # taken, maybe meanwhile
        await _require_free(session, row.principal, row.user_name)
        raise UniquenessException(detail=f"userName {row.user_name!r} is taken")


async def replace_user(
    session: AsyncSession, user_id: str, body: dict[str, Any], base: str, *, actor: str
) -> UserModel:
    row = await _require(session, user_id)
    user = validate(UserModel, body, Context.RESOURCE_REPLACEMENT_REQUEST)
    user.replace(to_resource(row, base))  # keeps the read-only, checks the immutable
    await _store(session, row, user, actor=actor)
    return to_resource(row, base)


async def patch_user(
    session: AsyncSession, user_id: str, body: dict[str, Any], base: str, *, actor: str
) -> UserModel:
    row = await _require(session, user_id)
    patch = validate(UserPatch, body, Context.RESOURCE_PATCH_REQUEST)
    user = to_resource(row, base)
    if patch.patch(user, scim_policy=POLICY):  # False: nothing changed (Okta resends a lot)
        await _store(session, row, user, actor=actor)
    return to_resource(row, base)


async def _store(session: AsyncSession, row: ScimUser, user: UserModel, *, actor: str) -> None:
    """Write `user` over `row`: a new userName renames the principal, a change of `active`
    (absent means active) deactivates or reactivates it."""
    if not user.user_name:
        raise InvalidValueException(detail="userName is required")
    principal = user_principal(user.user_name)
    # Without `active` (a replacement leaving it out, a PATCH removing it) the user stays as they
    # were: never reactivated by omission.
    active = row.active if user.active is None else user.active
    old_principal, was_active = row.principal, row.active
    renamed = principal != old_principal
    if renamed:
        await _require_free(session, principal, user.user_name)
    row.principal = principal
    row.user_name = user.user_name
    row.external_id = user.external_id
    row.display_name = user.display_name
    row.active = active
    row.resource = _stored(user)
    row.updated_at = utcnow()
    try:
        await session.flush()
    except IntegrityError:
        raise UniquenessException(detail=f"userName {user.user_name!r} is taken") from None
    if renamed:
        await provisioning.rename_user(session, old=old_principal, new=principal, actor=actor)
    if renamed or user.active != was_active:
        await provisioning.set_active(session, principal=principal, active=active, actor=actor)


async def delete_user(session: AsyncSession, user_id: str, *, actor: str) -> None:
    row = await _require(session, user_id)
    await provisioning.forget_user(session, principal=row.principal, actor=actor)
    await repository.delete_user(session, row.id)
