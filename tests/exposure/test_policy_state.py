"""A policy state derived from its predecessors decides and analyses exactly as one loaded
afresh from the same rows, whatever the changes and wherever the views are derived."""

import random
from typing import Any

from app.exposure.view import ANALYSER, PolicyView, current_view
from app.policy.casbin_model import Rule
from app.policy.snapshot import CHECKS, PolicySnapshot
from app.policy.state import (
    FOLLOW_LIMIT,
    DatasetFacts,
    PolicyChange,
    PolicyRows,
    PolicyState,
    ViewKind,
    load_rows,
)

USERS = [f"user:u{i}" for i in range(8)]
GROUPS = [f"group:g{i}" for i in range(5)]
DATASETS = ["hr.pay", "hr.reviews", "web.clicks"]
RESOURCES = [*DATASETS, "hr.*", "*"]
ACTIONS = ["read", "export", "write"]
NOW = 1_000_000.0


class Policy:
    """The rows a database would hold, changed alongside the states."""

    def __init__(self) -> None:
        self.rules: dict[str, Rule] = {}
        # in the order a database returns them (insertion order), which breaks ties between
        # shortest paths as Casbin does
        self.links: dict[tuple[str, str], None] = {}
        self.datasets = {d: DatasetFacts(d, "internal", (GROUPS[0],), "alert") for d in DATASETS}
        self.next_id = 1

    def rows(self) -> PolicyRows:
        return PolicyRows(list(self.rules.values()), list(self.links), dict(self.datasets))

    def random_change(self, rng: random.Random) -> PolicyChange:
        added = []
        for _ in range(rng.choice([0, 0, 1, 2])):
            expiry = rng.choice(["", "", str(NOW - 10), str(NOW + 10)])
            rule = Rule(
                rng.choice(USERS + GROUPS),
                rng.choice(RESOURCES),
                rng.choice(ACTIONS),
                rng.choice(["allow", "allow", "deny"]),
                expiry,
                str(self.next_id),
            )
            self.next_id += 1
            added.append(rule)
        removed = []
        if self.rules and rng.random() < 0.4:
            removed.append(rng.choice(sorted(self.rules.values(), key=lambda r: int(r.id))))
        links_added, links_removed = [], []
        if rng.random() < 0.5:
            link = (rng.choice(USERS + GROUPS), rng.choice(GROUPS))
            if link[0] != link[1] and link not in self.links:
                links_added.append(link)
        if self.links and rng.random() < 0.3:
            links_removed.append(rng.choice(sorted(self.links)))
        datasets = []
        if rng.random() < 0.3:
            audience = tuple(rng.sample(USERS + GROUPS, rng.randint(0, 2)))
            name = rng.choice([*DATASETS, "web.new"])
            datasets.append(
                DatasetFacts(name, rng.choice(["internal", "restricted"]), audience, "block")
            )
        for rule in removed:
            del self.rules[rule.id]
        self.rules.update((rule.id, rule) for rule in added)
        for link in links_removed:
            del self.links[link]
        self.links.update(dict.fromkeys(links_added))
        self.datasets.update((facts.id, facts) for facts in datasets)
        return PolicyChange(
            tuple(added), tuple(removed), tuple(links_added), tuple(links_removed), tuple(datasets)
        )


def decisions(
    snapshot: PolicySnapshot,
    principals: list[str] = USERS + GROUPS,
    datasets: list[str] = [*DATASETS, "web.new", "no.such"],  # noqa: B006 (never changed)
) -> list[object]:
    found: list[object] = [snapshot.sensitivities]
    for principal in principals:
        for dataset in datasets:
            for action in ACTIONS:
                found.append(snapshot.decide(principal, dataset, action, "", NOW))
    return found


def exposure(view: PolicyView) -> list[object]:
    found: list[object] = [view.datasets, view.grant_subjects]
    for dataset in sorted(view.datasets):
        for action in ACTIONS:
            found.append(view.analyser.effective(dataset, action, NOW))
    return found


async def fresh(version: int, policy: Policy) -> tuple[PolicySnapshot, PolicyView]:
    rows = policy.rows()
    state = PolicyState.of_rows(version, rows)
    return await state.build(CHECKS, rows), await state.build(ANALYSER, rows)


async def test_a_derived_state_decides_and_analyses_as_a_fresh_load():
    for seed in range(12):
        rng = random.Random(seed)
        policy = Policy()
        for _ in range(6):
            policy.random_change(rng)
        rows = policy.rows()
        state = PolicyState.of_rows(1, rows)
        await state.build(CHECKS, rows)
        await state.build(ANALYSER, rows)
        for version in range(2, 40):
            before = state.view(ANALYSER)
            change = policy.random_change(rng)
            # as the change pipeline does: the analyser eagerly (when it had it), the rest lazily
            views: dict[ViewKind[Any], object] = {}
            if before is not None and rng.random() < 0.7:
                views[ANALYSER] = before.changed(change)
            state = state.successor(version, change, views)
            if rng.random() < 0.4:  # a check or reader arrives: derived here, else later
                snapshot, view = state.view(CHECKS), state.view(ANALYSER)
                assert snapshot is not None and view is not None
                assert snapshot.version == version
                want_snapshot, want_view = await fresh(version, policy)
                assert decisions(snapshot) == decisions(want_snapshot), (seed, version)
                assert exposure(view) == exposure(want_view), (seed, version)
                assert state.datasets == policy.datasets


async def test_a_view_not_derived_for_too_many_changes_is_rebuilt():
    """Past `FOLLOW_LIMIT` changes a state keeps no earlier view (and nothing it holds)."""
    policy = Policy()
    rows = policy.rows()
    state = PolicyState.of_rows(1, rows)
    await state.build(CHECKS, rows)
    rng = random.Random(7)
    for version in range(2, 2 + FOLLOW_LIMIT):
        state = state.successor(version, policy.random_change(rng), {})
    assert state.view(CHECKS) is not None  # FOLLOW_LIMIT changes: still derived
    state = state.successor(99, policy.random_change(rng), {})
    for version in range(100, 100 + FOLLOW_LIMIT):
        state = state.successor(version, policy.random_change(rng), {})
    assert state.view(CHECKS) is None
    assert state.view(ANALYSER) is None


async def test_changes_through_the_api_publish_states_as_a_fresh_load_would_be(
    app, client, admin, tokens, sessionmaker, monkeypatch
):
    """Grants, memberships and datasets changed at random through the API (some refused by a
    block guard): each committed change publishes a state whose check index and analyser
    decide as ones loaded afresh would, and neither is ever rebuilt from the database."""
    rng = random.Random(17)
    groups = ["group:a", "group:b", "group:c"]
    users = [f"user:u{i}" for i in range(6)]
    datasets = ["ds.one", "ds.two", "ds.three"]
    for dataset in datasets:
        body = {"owner": "group:a", "sensitivity": "internal", "intended_audience": ["group:a"]}
        r = await client.put(f"/v1/datasets/{dataset}", json=body, headers=admin)
        assert r.status_code == 201, r.text
    check = {
        "json": {"principal": "user:u0", "dataset": "ds.one", "action": "read"},
        "headers": tokens["check"],
    }
    assert (await client.post("/v1/check", **check)).status_code == 200
    builds: list[str] = []
    real_checks, real_analyser = type(CHECKS).build, type(ANALYSER).build

    def counted(kind: type[Any]) -> None:
        real = kind.build

        async def build(self: Any, rows: PolicyRows, state: PolicyState) -> Any:
            builds.append(kind.__name__)
            return await real(self, rows, state)

        monkeypatch.setattr(kind, "build", build)

    counted(type(CHECKS))
    counted(type(ANALYSER))
    grants: list[int] = []
    for step in range(30):
        kind = rng.choice(["grant", "grant", "revoke", "add", "remove", "replace", "dataset"])
        if kind == "grant" or (kind == "revoke" and not grants):
            body = {
                "principal": rng.choice(users + groups),
                "resource": rng.choice(["ds.*", *datasets]),
                "action": rng.choice(["read", "export"]),
                "effect": rng.choice(["allow", "allow", "deny"]),
            }
            r = await client.post("/v1/grants", json=body, headers=admin)
            if r.status_code == 201:
                grants.append(r.json()["id"])
        elif kind == "revoke":
            grant = grants.pop(rng.randrange(len(grants)))
            r = await client.delete(f"/v1/grants/{grant}", headers=admin)
        elif kind == "add":
            path = f"/v1/groups/{rng.choice(groups)[6:]}/members"
            r = await client.post(path, json={"member": rng.choice(users)}, headers=admin)
        elif kind == "remove":
            path = f"/v1/groups/{rng.choice(groups)[6:]}/members/{rng.choice(users)}"
            r = await client.delete(path, headers=admin)
        elif kind == "replace":
            members = [*rng.sample(users, 2), *rng.sample(groups[:1], rng.randint(0, 1))]
            path = f"/v1/groups/{rng.choice(groups[1:])[6:]}/members"
            r = await client.put(path, json={"members": members}, headers=admin)
        else:
            body = {
                "owner": "group:a",
                "sensitivity": rng.choice(["internal", "restricted"]),
                "intended_audience": rng.sample(users + groups, 2),
                "guard": rng.choice(["alert", "block"]),
            }
            path = f"/v1/datasets/{rng.choice([*datasets, 'ds.four'])}"
            r = await client.put(path, json=body, headers=admin)
        assert r.status_code in (200, 201, 404, 409), r.text
        if rng.random() < 0.5:  # a check derives the index now, or after several changes
            assert (await client.post("/v1/check", **check)).status_code == 200
        async with sessionmaker() as session:
            snapshot = await app.state.policy.current(session)
            view = await current_view(session)
            rows = await load_rows(session)
        fresh = PolicyState.of_rows(snapshot.version, rows)
        principals, names = users + groups, [*datasets, "ds.four"]
        want = await real_checks(CHECKS, rows, fresh)
        assert decisions(snapshot, principals, names) == decisions(want, principals, names), step
        assert exposure(view) == exposure(await real_analyser(ANALYSER, rows, fresh)), step
    assert builds == []
