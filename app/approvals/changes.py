"""The changes an approval can carry: each validated exactly as its own endpoint validates it
(a 422 names the field under `change.`), and applied through the same change pipeline
(`app.changes`) with the approved acceptance."""

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import unquote

from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from app.acceptance import AcceptExposure
from app.approvals.schemas import ChangeKind, ChangeRequest
from app.changes import datasets as dataset_changes
from app.changes import grants as grant_changes
from app.changes import holds as hold_changes
from app.changes import members as member_changes
from app.changes.schemas import DatasetChanged, GrantChanged, GroupChanged
from app.datasets.schemas import DatasetWrite
from app.directory import service as directory_service
from app.directory.schemas import MemberAdd, MembersReplace
from app.errors import Conflict, InvalidInput
from app.exposure import findings as exposure_findings
from app.exposure.schemas import FindingRead
from app.identifiers import DatasetId, GroupName, PrincipalId
from app.plans import service as plans_service
from app.plans.schemas import PolicyDocument
from app.policy.schemas import GrantCreate

# (the change's response document, the findings it opened)
Outcome = tuple[dict[str, Any], list[FindingRead]]
# (session, approved acceptance, actor: the requester, audience growth limit) -> outcome
Apply = Callable[[AsyncSession, AcceptExposure, str, int | None], Awaitable[Outcome]]

Id = Annotated[int, Field(ge=1, le=2**62)]
_PARAMS: dict[str, TypeAdapter[Any]] = {
    "group": TypeAdapter(GroupName),
    "member": TypeAdapter(PrincipalId),
    "dataset": TypeAdapter(DatasetId),
    "id": TypeAdapter(Id),
}
_ROUTES: list[tuple[str, re.Pattern[str], ChangeKind]] = [
    ("POST", re.compile(r"/v1/grants"), ChangeKind.grant_create),
    ("DELETE", re.compile(r"/v1/grants/(?P<id>[^/]+)"), ChangeKind.grant_revoke),
    ("POST", re.compile(r"/v1/groups/(?P<group>[^/]+)/members"), ChangeKind.member_add),
    ("PUT", re.compile(r"/v1/groups/(?P<group>[^/]+)/members"), ChangeKind.members_replace),
    (
        "DELETE",
        re.compile(r"/v1/groups/(?P<group>[^/]+)/members/(?P<member>[^/]+)"),
        ChangeKind.member_remove,
    ),
    ("PUT", re.compile(r"/v1/datasets/(?P<dataset>[^/]+)"), ChangeKind.dataset_put),
    ("POST", re.compile(r"/v1/findings/(?P<id>[^/]+)/accept"), ChangeKind.finding_accept),
    ("POST", re.compile(r"/v1/holds/(?P<id>[^/]+)/release"), ChangeKind.hold_release),
    ("POST", re.compile(r"/v1/policy/apply"), ChangeKind.policy_apply),
]
_BODIES: dict[ChangeKind, type[BaseModel]] = {
    ChangeKind.grant_create: GrantCreate,
    ChangeKind.member_add: MemberAdd,
    ChangeKind.members_replace: MembersReplace,
    ChangeKind.dataset_put: DatasetWrite,
    ChangeKind.policy_apply: PolicyDocument,
}
WHAT = (
    "POST /v1/grants, DELETE /v1/grants/{id}, POST|PUT /v1/groups/{group}/members, "
    "DELETE /v1/groups/{group}/members/{member}, PUT /v1/datasets/{dataset}, "
    "POST /v1/findings/{id}/accept, POST /v1/holds/{id}/release, POST /v1/policy/apply"
)


@dataclass(frozen=True)
class Proposed:
    """A validated change, ready to apply."""

    kind: ChangeKind
    apply: Apply


def parse(change: ChangeRequest) -> Proposed:
    """The change validated as its endpoint would validate it (422 naming `change.*`)."""
    if "?" in change.path or "#" in change.path:
        raise InvalidInput("change.path", "no query or fragment: the approval is the acceptance")
    for method, pattern, kind in _ROUTES:
        found = pattern.fullmatch(change.path)
        if found is not None and method == change.method:
            params = {name: _param(name, value) for name, value in found.groupdict().items()}
            return Proposed(kind, _applier(kind, params, _body(kind, change.body)))
    raise InvalidInput(
        "change.path", f"{change.method} {change.path} is not a change approvals take ({WHAT})"
    )


def _param(name: str, raw: str) -> Any:
    try:
        return _PARAMS[name].validate_python(unquote(raw))
    except ValidationError as exc:
        raise InvalidInput("change.path", f"{name}: {exc.errors()[0]['msg']}") from None


def _body(kind: ChangeKind, body: dict[str, Any]) -> BaseModel | None:
    if "accept_exposure" in body:
        raise InvalidInput(
            "change.body.accept_exposure",
            "not here: the approval's reason and until are the change's acceptance",
        )
    model = _BODIES.get(kind)
    if model is None:
        if body:
            field = next(iter(body))
            raise InvalidInput(
                f"change.body.{field}",
                "this change takes no body: the approval's reason and until are its acceptance",
            )
        return None
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise InvalidInput(
            f"change.body.{where}" if where else "change.body", error["msg"]
        ) from None


def _applier(kind: ChangeKind, params: dict[str, Any], body: BaseModel | None) -> Apply:
    """The change's application: its endpoint's work, with the approved acceptance."""

    async def apply(
        session: AsyncSession, accept: AcceptExposure, actor: str, limit: int | None
    ) -> Outcome:
        if kind is ChangeKind.grant_create:
            assert isinstance(body, GrantCreate)
            grant, changes = await grant_changes.create_grant(
                session,
                body=body.model_copy(update={"accept_exposure": accept}),
                actor=actor,
                field="change.body",
            )
            made = GrantChanged(**grant.model_dump(), **changes.model_dump())
            return made.model_dump(mode="json"), changes.findings_opened
        if kind is ChangeKind.grant_revoke:
            grant, changes = await grant_changes.revoke_grant(
                session, grant_id=params["id"], actor=actor, accept=accept
            )
            made = GrantChanged(**grant.model_dump(), **changes.model_dump())
            return made.model_dump(mode="json"), changes.findings_opened
        if kind is ChangeKind.dataset_put:
            assert isinstance(body, DatasetWrite)
            dataset, _, changes, moved = await dataset_changes.put_dataset(
                session,
                dataset_id=params["dataset"],
                body=body.model_copy(update={"accept_exposure": accept}),
                actor=actor,
                growth_limit=limit,
            )
            put = DatasetChanged(
                **dataset.model_dump(), **changes.model_dump(), guard_changed=moved
            )
            return put.model_dump(mode="json"), changes.findings_opened
        if kind is ChangeKind.finding_accept:
            accepted = await exposure_findings.accept_finding(
                session, finding_id=params["id"], body=accept, actor=actor
            )
            return accepted.model_dump(mode="json"), []
        if kind is ChangeKind.policy_apply:
            assert isinstance(body, PolicyDocument)
            doc = body.model_copy(update={"accept_exposure": accept})
            applied = await plans_service.apply(session, doc=doc, actor=actor, growth_limit=limit)
            if not session.in_transaction():  # it changed nothing, and rolled back
                raise Conflict("the policy document changes nothing now: reject the request")
            return applied.model_dump(mode="json"), applied.findings_opened
        if kind is ChangeKind.hold_release:
            hold, changes = await hold_changes.release_hold(
                session, hold_id=params["id"], actor=actor, accept=accept
            )
            return {"hold": hold.model_dump(mode="json"), **changes.model_dump(mode="json")}, (
                changes.findings_opened
            )
        gid = directory_service.group_id(params["group"])
        if kind is ChangeKind.member_add:
            assert isinstance(body, MemberAdd)
            group, changes = await member_changes.change_members(
                session, gid=gid, add=[body.member], actor=actor, accept=accept, growth_limit=limit
            )
        elif kind is ChangeKind.members_replace:
            assert isinstance(body, MembersReplace)
            group, changes = await member_changes.change_members(
                session,
                gid=gid,
                replace_with=body.members,
                actor=actor,
                accept=accept,
                growth_limit=limit,
            )
        else:
            group, changes = await member_changes.change_members(
                session, gid=gid, remove=params["member"], actor=actor, accept=accept
            )
        changed = GroupChanged(**group.model_dump(), **changes.model_dump())
        return changed.model_dump(mode="json"), changes.findings_opened

    return apply
