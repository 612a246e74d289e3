"""A policy's history, generated and written in bulk: what the change pipeline would have
written for the same changes, without making them one HTTP request at a time.

The organisation (`bench.exposure`'s rows) is loaded as version 1 at `start`; each change after
it is one policy version (one transaction of the pipeline), at instants spread evenly up to
`end`. For every change the pipeline writes (`app.policy.published.publish_on_commit`,
`app.policy.history.repository.record`, `app.policy_version`):

* its history rows: the row of what it ends closed (``until_version``, ``until_at``,
  ``until_by``), the row of what it starts opened (``from_*``), at the version's instant;
* ``policy_versions``: the version, its instant and who made it; ``policy_state``: the last;
* the policy's tables as the change leaves them: a grant created (``grants``) or revoked
  (``revoked_at``, ``revoked_by``), a membership added or removed (``memberships``), a
  dataset's audience or guard changed (``datasets``).

The mix: grants created (30 %) and revoked (20 %), users and services added to teams (25 %)
and removed from them (20 %), datasets' audience or guard changed (5 %). Findings, alerts and
the admin trail are not written (what `at=` and the report read is the history).

`policy_as_of` replays the changes themselves (not the history rows) to the policy as of a
version: the reference the service's `at=` answers are compared with.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update

from app.config import Settings
from app.db import create_engine
from app.models import Base
from app.policy.casbin_model import Rule
from app.policy.repository import rule_of
from app.policy_version import PolicyVersion, PolicyVersionRecord
from bench.exposure_analyser import Org

ACTOR = "bench-history"
CHUNK = 5_000
MIX = (
    ("grant_created", 30),
    ("grant_revoked", 20),
    ("member_added", 25),
    ("member_removed", 20),
    ("dataset_changed", 5),
)


@dataclass(frozen=True)
class Change:
    version: int
    at: datetime
    kind: str  # one of MIX's
    grant: dict[str, Any] | None = None  # grant_created: its row; grant_revoked: {"id": n}
    link: tuple[str, str] | None = None  # (member, group)
    dataset: tuple[str, tuple[str, ...], str] | None = None  # (id, audience, guard)


@dataclass
class Generated:
    """What the pipeline would have written: every table's rows, and the changes made."""

    start: datetime
    tables: dict[str, list[dict[str, Any]]]
    history: dict[str, list[dict[str, Any]]]
    versions: list[dict[str, Any]]
    changes: list[Change]
    initial: dict[str, list[dict[str, Any]]]  # the organisation's rows, as version 1

    @property
    def last_version(self) -> int:
        return int(self.versions[-1]["version"])


class _Open:
    """History rows by key, and which is open (a list of rows, the open one's index by key)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.open: dict[Any, int] = {}

    def opened(self, key: Any, row: dict[str, Any], version: int, at: datetime) -> None:
        row.update(from_version=version, from_at=at, from_by=ACTOR)
        row.update(until_version=None, until_at=None, until_by=None)
        self.open[key] = len(self.rows)
        self.rows.append(row)

    def closed(self, key: Any, version: int, at: datetime) -> None:
        row = self.rows[self.open.pop(key)]
        row.update(until_version=version, until_at=at, until_by=ACTOR)


class _Pool:
    """A set with a uniform random pick and O(1) removal."""

    def __init__(self, items: list[Any]) -> None:
        self.items = list(items)
        self.where = {item: i for i, item in enumerate(self.items)}

    def add(self, item: Any) -> None:
        self.where[item] = len(self.items)
        self.items.append(item)

    def pop_random(self, rng: random.Random) -> Any:
        i = rng.randrange(len(self.items))
        item, last = self.items[i], self.items[-1]
        self.items[i], self.where[last] = last, i
        self.items.pop()
        del self.where[item]
        return item


def _grant_row(org: Org, rng: random.Random, grant_id: int, at: datetime) -> dict[str, Any]:
    dataset = rng.choice(org.datasets)
    roll = rng.random()
    principal = rng.choice(org.users if roll < 0.5 else org.teams if roll < 0.8 else org.services)
    resource = dataset if rng.random() < 0.8 else dataset.rsplit(".", 1)[0] + ".*"
    return {
        "id": grant_id,
        "principal": principal,
        "resource": resource,
        "action": "read",
        "effect": "deny" if rng.random() < 0.1 else "allow",
        "expires_at": None,
        "expired_at": None,
        "justification": "bench history",
        "created_by": ACTOR,
        "created_at": at,
        "revoked_at": None,
        "revoked_by": None,
    }


def generate(
    org: Org,
    tables: dict[str, list[dict[str, Any]]],
    *,
    start: datetime,
    end: datetime,
    changes: int,
    seed: int = 1,
) -> Generated:
    """`tables` (`bench.exposure.rows`, made at `start`) as version 1, then `changes` changes."""
    rng = random.Random(seed)
    grants = {int(g["id"]): dict(g) for g in tables["grants"]}
    links = {(m["member"], m["group_id"]): dict(m) for m in tables["memberships"]}
    datasets = {d["id"]: dict(d) for d in tables["datasets"]}
    grant_rows, link_rows, dataset_rows = _Open(), _Open(), _Open()
    for g in grants.values():
        row = {k: g[k] for k in ("principal", "resource", "action", "effect", "expires_at")}
        grant_rows.opened(g["id"], {"grant_id": g["id"], **row}, 1, start)
    for member, group in links:
        link_rows.opened((member, group), {"member": member, "group_id": group}, 1, start)
    for d in datasets.values():
        dataset_rows.opened(d["id"], _dataset_row(d), 1, start)
    live = _Pool([i for i, g in grants.items() if g["revoked_at"] is None])
    leaves = org.users + org.services
    removable = _Pool([link for link in links if not link[0].startswith("group:")])
    versions = [{"version": 1, "at": start, "by": ACTOR}]
    made: list[Change] = []
    kinds = [k for k, _ in MIX]
    weights = [w for _, w in MIX]
    step = (end - start) / (changes + 1)
    next_id = max(grants) + 1
    for n in range(1, changes + 1):
        version, at = n + 1, start + step * n
        kind = rng.choices(kinds, weights)[0]
        if kind == "grant_revoked" and not live.items:
            kind = "grant_created"
        if kind == "member_removed" and not removable.items:
            kind = "member_added"
        if kind == "grant_created":
            grant = _grant_row(org, rng, next_id, at)
            next_id += 1
            grants[grant["id"]] = grant
            live.add(grant["id"])
            row = {k: grant[k] for k in ("principal", "resource", "action", "effect")}
            grant_rows.opened(
                grant["id"], {"grant_id": grant["id"], **row, "expires_at": None}, version, at
            )
            change = Change(version, at, kind, grant=dict(grant))
        elif kind == "grant_revoked":
            grant_id = live.pop_random(rng)
            grants[grant_id].update(revoked_at=at, revoked_by=ACTOR)
            grant_rows.closed(grant_id, version, at)
            change = Change(version, at, kind, grant={"id": grant_id})
        elif kind == "member_added":
            link = (rng.choice(leaves), rng.choice(org.teams))
            while link in links:
                link = (rng.choice(leaves), rng.choice(org.teams))
            links[link] = {
                "member": link[0],
                "group_id": link[1],
                "created_at": at,
                "created_by": ACTOR,
            }
            removable.add(link)
            link_rows.opened(link, {"member": link[0], "group_id": link[1]}, version, at)
            change = Change(version, at, kind, link=link)
        elif kind == "member_removed":
            link = removable.pop_random(rng)
            del links[link]
            link_rows.closed(link, version, at)
            change = Change(version, at, kind, link=link)
        else:
            dataset = datasets[rng.choice(org.datasets)]
            if rng.random() < 0.5:
                dataset["guard"] = "block" if dataset["guard"] == "alert" else "alert"
            else:
                dataset["intended_audience"] = [rng.choice(org.orgs), rng.choice(org.services)]
            dataset.update(updated_at=at, updated_by=ACTOR)
            dataset_rows.closed(dataset["id"], version, at)
            dataset_rows.opened(dataset["id"], _dataset_row(dataset), version, at)
            facts = (dataset["id"], tuple(dataset["intended_audience"]), dataset["guard"])
            change = Change(version, at, kind, dataset=facts)
        made.append(change)
        versions.append({"version": version, "at": at, "by": ACTOR})
    return Generated(
        start=start,
        tables={
            "groups": tables["groups"],
            "datasets": list(datasets.values()),
            "memberships": list(links.values()),
            "grants": sorted(grants.values(), key=lambda g: int(g["id"])),
        },
        history={
            "grant_history": grant_rows.rows,
            "membership_history": link_rows.rows,
            "dataset_history": dataset_rows.rows,
        },
        versions=versions,
        changes=made,
        initial=tables,
    )


def _dataset_row(d: dict[str, Any]) -> dict[str, Any]:
    return {
        "dataset_id": d["id"],
        "sensitivity": d["sensitivity"],
        "audience": list(d["intended_audience"]),
        "guard": d["guard"],
    }


Policy = tuple[list[Rule], list[tuple[str, str]], dict[str, list[str]]]


def policy_as_of(generated: Generated, version: int) -> Policy:
    """The policy (rules, links, audiences) after the changes up to `version`, replayed from
    the changes (not the history rows): what a plain Casbin enforcer is built from."""
    initial = generated.initial
    grants = {int(g["id"]): _rule(g) for g in initial["grants"] if g["revoked_at"] is None}
    links = {(m["member"], m["group_id"]) for m in initial["memberships"]}
    audiences = {d["id"]: list(d["intended_audience"]) for d in initial["datasets"]}
    for change in generated.changes:
        if change.version > version:
            break
        if change.kind == "grant_created" and change.grant is not None:
            grants[int(change.grant["id"])] = _rule(change.grant)
        elif change.kind == "grant_revoked" and change.grant is not None:
            del grants[int(change.grant["id"])]
        elif change.kind == "member_added" and change.link is not None:
            links.add(change.link)
        elif change.kind == "member_removed" and change.link is not None:
            links.discard(change.link)
        elif change.dataset is not None:
            audiences[change.dataset[0]] = list(change.dataset[1])
    return [grants[i] for i in sorted(grants)], sorted(links), audiences


def _rule(g: dict[str, Any]) -> Rule:
    return rule_of(
        g["principal"], g["resource"], g["action"], g["effect"], g["expires_at"], int(g["id"])
    )


async def write(database_url: str, generated: Generated) -> None:
    """Into a migrated, empty database: the tables, the history, the versions (Core inserts
    into the real tables, one transaction). The database is dated as made just before the
    history starts: its migration recorded version 0 (the empty policy) at its own instant,
    now, which would otherwise stand for every instant after the generated ones."""
    engine = create_engine(Settings(database_url=database_url))
    batches = {**generated.tables, **generated.history, "policy_versions": generated.versions}
    order = ("groups", "datasets", "memberships", "grants", *generated.history, "policy_versions")
    try:
        async with engine.begin() as conn:
            for name in order:
                table = Base.metadata.tables[name]
                rows = batches[name]
                for i in range(0, len(rows), CHUNK):
                    await conn.execute(table.insert(), rows[i : i + CHUNK])
            await conn.execute(
                update(PolicyVersionRecord)
                .where(PolicyVersionRecord.version == 0)
                .values(at=generated.start - timedelta(seconds=1))
            )
            await conn.execute(
                update(PolicyVersion)
                .where(PolicyVersion.id == 1)
                .values(version=generated.last_version, updated_at=generated.versions[-1]["at"])
            )
            if engine.dialect.name == "postgresql":  # ids were given explicitly
                await conn.exec_driver_sql(
                    "SELECT setval(pg_get_serial_sequence('grants', 'id'), "
                    "(SELECT max(id) FROM grants))"
                )
    finally:
        await engine.dispose()


def instants(generated: Generated, count: int, rng: random.Random) -> list[datetime]:
    """`count` distinct instants between the first change and the last, each in another
    version (so no two share a rebuilt state)."""
    picked = rng.sample(generated.changes, min(count, len(generated.changes)))
    return [c.at + timedelta(microseconds=1) for c in sorted(picked, key=lambda c: c.version)]
