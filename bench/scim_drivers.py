"""How `bench.scim` talks to aclaudit: over HTTP to a real ``aclaudit serve`` (the SCIM
routes), or in-process through `app.identity.provisioning` (one session per call, as a SCIM
request makes it; no HTTP, no SCIM resource layer)."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from bench.aclaudit_target import REPO, create_token, serve
from bench.procs import BenchError

ACTOR = "scim:bench"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


@dataclass(frozen=True)
class Member:
    id: str  # the SCIM id
    principal: str


class Driver(Protocol):
    async def create_user(self, user_name: str) -> str: ...
    async def create_group(self, display_name: str) -> str: ...
    async def add_members(self, group: str, members: list[Member], *, shape: str) -> float: ...
    async def remove_member(self, group: str, member: Member, *, shape: str) -> float: ...
    async def scan(self) -> dict[str, Any]: ...
    async def per_commit(self, kind: str) -> dict[str, float] | None: ...


def user_body(user_name: str) -> dict[str, Any]:
    """What Okta sends to create a user (without the password it may send)."""
    given, family = user_name[:1].upper(), user_name[1:]
    return {
        "schemas": [USER_SCHEMA],
        "userName": user_name,
        "name": {"givenName": given, "familyName": family},
        "emails": [{"primary": True, "value": f"{user_name}@example.com", "type": "work"}],
        "displayName": f"{given} {family}",
        "locale": "en-US",
        "externalId": f"00u{user_name}",
        "active": True,
    }


def add_body(members: list[Member], shape: str) -> dict[str, Any]:
    if shape == "okta":
        value = [{"value": m.id, "display": m.principal} for m in members]
        op = {"op": "add", "path": "members", "value": value}
    else:  # Entra
        op = {
            "op": "Add",
            "path": "members",
            "value": [{"$ref": None, "value": m.id} for m in members],
        }
    return {"schemas": [PATCH_SCHEMA], "Operations": [op]}


def remove_body(member: Member, shape: str) -> dict[str, Any]:
    if shape == "okta":
        op: dict[str, Any] = {"op": "remove", "path": f'members[value eq "{member.id}"]'}
    else:  # Entra's default (legacy) form
        op = {"op": "Remove", "path": "members", "value": [{"value": member.id}]}
    return {"schemas": [PATCH_SCHEMA], "Operations": [op]}


class HttpDriver:
    """A real ``aclaudit serve`` (one worker) on CPU `cpus[0]`, this process on `cpus[1]`."""

    def __init__(self, url: str, connections: int, cpus: tuple[str, str] | None) -> None:
        self.url, self.connections, self.cpus = url, connections, cpus
        self.base = ""
        self.scim_token = self.admin_token = ""
        self._client: httpx.AsyncClient | None = None

    def serve(self, measure: Callable[[], None]) -> None:
        try:
            self.scim_token = create_token(self.url, "bench-scim", "scim")
        except BenchError as exc:
            raise BenchError(
                f"no token of scope scim ({exc}): is the SCIM layer on this tree? "
                "Use --in-process without it"
            ) from None
        self.admin_token = create_token(self.url, "bench-admin", "admin")
        backend = "pg" if self.url.startswith("postgresql") else "sqlite"
        log = REPO / "bench" / ".work" / f"scim-serve-{backend}.log"
        cpus = None if self.cpus is None else self.cpus[0]
        with serve(self.url, log, ready_timeout=600.0, cpus=cpus) as server:
            self.base = server.base_url
            if self.cpus is not None:
                os.sched_setaffinity(0, {int(self.cpus[1])})
            measure()

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                base_url=self.base,
                headers={
                    "Authorization": f"Bearer {self.scim_token}",
                    "Content-Type": "application/scim+json",
                },
                timeout=httpx.Timeout(600.0),
                limits=httpx.Limits(max_connections=self.connections),
            )
        return self._client

    async def _call(self, method: str, path: str, body: Any, expect: tuple[int, ...]) -> Any:
        response = await self.client().request(method, path, content=_json(body))
        if response.status_code not in expect:
            raise BenchError(f"{method} {path} -> {response.status_code}: {response.text[:500]}")
        return response.json() if response.content else None

    async def create_user(self, user_name: str) -> str:
        created = await self._call("POST", "/scim/v2/Users", user_body(user_name), (201,))
        return str(created["id"])

    async def create_group(self, display_name: str) -> str:
        body = {"schemas": [GROUP_SCHEMA], "displayName": display_name, "members": []}
        created = await self._call("POST", "/scim/v2/Groups", body, (201,))
        return str(created["id"])

    async def add_members(self, group: str, members: list[Member], *, shape: str) -> float:
        started = time.perf_counter()
        await self._call("PATCH", f"/scim/v2/Groups/{group}", add_body(members, shape), (200, 204))
        return time.perf_counter() - started

    async def remove_member(self, group: str, member: Member, *, shape: str) -> float:
        started = time.perf_counter()
        await self._call(
            "PATCH", f"/scim/v2/Groups/{group}", remove_body(member, shape), (200, 204)
        )
        return time.perf_counter() - started

    async def per_commit(self, kind: str) -> dict[str, float] | None:
        """The server's group commits of `kind` so far (`aclaudit_scim_<kind>_per_commit`:
        `pushes`, `creates`): count and mean."""
        response = await self.client().get(
            "/metrics", headers={"Authorization": f"Bearer {self.admin_token}"}
        )
        if response.status_code != 200:
            raise BenchError(f"GET /metrics -> {response.status_code}: {response.text[:500]}")
        values = {}
        for line in response.text.splitlines():
            name, _, value = line.partition(" ")
            if name in (
                f"aclaudit_scim_{kind}_per_commit_sum",
                f"aclaudit_scim_{kind}_per_commit_count",
            ):
                values[name.rsplit("_", 1)[1]] = float(value)
        if not values.get("count"):
            return None
        return {"commits": values["count"], "mean": round(values["sum"] / values["count"], 2)}

    async def scan(self) -> dict[str, Any]:
        response = await self.client().post(
            "/v1/scan", headers={"Authorization": f"Bearer {self.admin_token}"}
        )
        if response.status_code != 200:
            raise BenchError(f"POST /v1/scan -> {response.status_code}: {response.text[:500]}")
        found: dict[str, Any] = response.json()
        return found


def _json(body: Any) -> bytes:
    import json

    return json.dumps(body).encode()


class InProcessDriver:
    """The provisioning calls the SCIM routes make, on an app in this process."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.app: Any = None
        self.groups: dict[str, str] = {}  # SCIM id -> principal

    async def run(self, measure: Callable[[], Awaitable[None]]) -> None:
        from app.config import Settings
        from app.main import create_app

        self.app = create_app(Settings(database_url=self.url, access_log=False))
        async with self.app.router.lifespan_context(self.app):
            await measure()

    async def _write(self, call: Callable[[Any], Awaitable[Any]]) -> Any:
        from app.db import begin_write

        async with self.app.state.sessionmaker() as session:
            await begin_write(session)
            result = await call(session)
            await session.commit()
        return result

    async def create_user(self, user_name: str) -> str:
        from app.db import utcnow
        from app.identity import provisioning
        from app.identity.models import ScimUser

        async def call(session: Any) -> str:
            now = utcnow()
            body = user_body(user_name)
            row = ScimUser(
                id=str(uuid.uuid4()),
                principal=f"user:{user_name}",
                user_name=user_name,
                external_id=body["externalId"],
                display_name=body["displayName"],
                active=True,
                resource={k: v for k, v in body.items() if k != "schemas"},
                created_at=now,
                updated_at=now,
            )
            session.add(row)
            await session.flush()
            await provisioning.set_active(
                session, principal=row.principal, active=True, actor=ACTOR
            )
            return row.id

        found: str = await self._write(call)
        return found

    async def create_group(self, display_name: str) -> str:
        from app.db import utcnow
        from app.identity import provisioning
        from app.identity.models import ScimGroup

        principal = f"group:{display_name}"

        async def call(session: Any) -> str:
            await provisioning.claim_group(session, group=principal, actor=ACTOR)
            now = utcnow()
            row = ScimGroup(
                id=str(uuid.uuid4()),
                group_id=principal,
                display_name=display_name,
                external_id=None,
                created_at=now,
                updated_at=now,
            )
            session.add(row)
            await session.flush()
            return row.id

        found: str = await self._write(call)
        self.groups[found] = principal
        return found

    async def _members(self, group: str, **change: list[str]) -> float:
        from app.identity import provisioning

        started = time.perf_counter()
        await self._write(
            lambda session: provisioning.change_members(
                session, group=self.groups[group], actor=ACTOR, **change
            )
        )
        return time.perf_counter() - started

    async def add_members(self, group: str, members: list[Member], *, shape: str) -> float:
        return await self._members(group, add=[m.principal for m in members])

    async def remove_member(self, group: str, member: Member, *, shape: str) -> float:
        return await self._members(group, remove=[member.principal])

    async def per_commit(self, kind: str) -> dict[str, float] | None:
        return None  # the provisioning calls run one by one, not through the group commit

    async def scan(self) -> dict[str, Any]:
        from app.exposure import scan as scans

        found = await self._write(lambda session: scans.scan(session, actor=ACTOR))
        result: dict[str, Any] = found.model_dump(mode="json")
        return result
