"""Property: on random sequences of grants, revokes, membership and audience changes made
through the API, `explain?at=T` and `exposure?at=T` answer, for every instant T recorded after
a step, what a plain `casbin.Enforcer` built from the policy as it was at T answers (and
`principals/{p}/access?at=T` lists exactly the datasets explain allows then)."""

import itertools
from datetime import UTC, datetime
from typing import Any

import httpx
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st

from app.policy.casbin_model import Rule, casbin_enforcer
from tests.me.test_me import Served

USERS = ["u0", "u1", "u2", "s0"]  # s0: a service
GROUPS = ["g0", "g1", "g2"]
DATASETS = ["a", "b.c"]
RESOURCES = ["a", "b.c", "*", "b.*"]  # under the example's own prefix
GRANT_PURPOSES = [["*"], ["*"], ["train"], ["train", "eval"]]
# Explain is asked for these purposes (none: only grants for any purpose match it).
ASKED_PURPOSES = ["train", "eval", None]

Step = tuple[str, int, int, bool]
steps = st.lists(
    st.tuples(
        st.sampled_from(["grant", "grant", "revoke", "join", "leave", "audience"]),
        st.integers(0, 63),
        st.integers(0, 63),
        st.booleans(),
    ),
    min_size=1,
    max_size=8,
)


class Example:
    """One example's names (its own prefix: the database outlives it) and the policy as the
    test itself keeps it, step by step: the reference the service is compared with."""

    def __init__(self, number: int) -> None:
        self.prefix = f"e{number}"
        self.leaves = [
            f"service:{self.prefix}-{u}" if u.startswith("s") else f"user:{self.prefix}-{u}"
            for u in USERS
        ]
        self.groups = [f"group:{self.prefix}-{g}" for g in GROUPS]
        self.datasets = [f"{self.prefix}.{d}" for d in DATASETS]
        self.rules: dict[tuple[int, str], Rule] = {}  # (grant id, purpose) -> its rule
        self.links: set[tuple[str, str]] = set()
        self.audiences: dict[str, list[str]] = {d: [self.groups[0]] for d in self.datasets}

    def resource(self, i: int) -> str:
        return f"{self.prefix}.{RESOURCES[i % len(RESOURCES)]}"

    def subject(self, i: int) -> str:
        return [*self.leaves, *self.groups][i % (len(self.leaves) + len(self.groups))]

    def frozen(self) -> tuple[list[Rule], list[tuple[str, str]], dict[str, list[str]]]:
        return list(self.rules.values()), sorted(self.links), dict(self.audiences)


def dataset_body(audience: list[str]) -> dict[str, Any]:
    return {
        "owner": "group:owners",
        "sensitivity": "internal",
        "intended_audience": audience,
        "guard": "alert",
    }


async def run_step(
    client: httpx.AsyncClient, admin: dict[str, str], ex: Example, step: Step
) -> None:
    kind, i, j, flag = step
    if kind == "grant":
        body = {
            "principal": ex.subject(i),
            "resource": ex.resource(j),
            "action": "read",
            "effect": "deny" if flag and i % 3 == 0 else "allow",
            "purposes": GRANT_PURPOSES[(i + j) % len(GRANT_PURPOSES)],
        }
        r = await client.post("/v1/grants", json=body, headers=admin)
        assert r.status_code == 201, r.text
        g = r.json()
        for purpose in g["purposes"]:
            ex.rules[(g["id"], purpose)] = Rule(
                g["principal"], g["resource"], "read", g["effect"], "", str(g["id"]), purpose
            )
    elif kind == "revoke" and ex.rules:
        grant_ids = sorted({grant_id for grant_id, _purpose in ex.rules})
        grant_id = grant_ids[i % len(grant_ids)]
        r = await client.delete(f"/v1/grants/{grant_id}", headers=admin)
        assert r.status_code == 200, r.text
        for key in [key for key in ex.rules if key[0] == grant_id]:
            del ex.rules[key]
    elif kind == "join":
        group = ex.groups[j % len(ex.groups)]
        member = ex.subject(i)
        r = await client.post(
            f"/v1/groups/{group.removeprefix('group:')}/members",
            json={"member": member},
            headers=admin,
        )
        assert r.status_code in (200, 201, 409), r.text  # 409: a cycle, refused
        if r.status_code != 409:
            ex.links.add((member, group))
    elif kind == "leave" and ex.links:
        member, group = sorted(ex.links)[i % len(ex.links)]
        r = await client.delete(
            f"/v1/groups/{group.removeprefix('group:')}/members/{member}", headers=admin
        )
        assert r.status_code in (200, 204), r.text
        ex.links.discard((member, group))
    elif kind == "audience":
        dataset = ex.datasets[j % len(ex.datasets)]
        pool = [*ex.leaves, *ex.groups]
        audience = [p for k, p in enumerate(pool) if (i >> k) & 1] if flag else []
        r = await client.put(f"/v1/datasets/{dataset}", json=dataset_body(audience), headers=admin)
        assert r.status_code == 200, r.text
        ex.audiences[dataset] = audience


async def answers(
    client: httpx.AsyncClient, headers: dict[str, str], ex: Example, at: datetime
) -> tuple[dict[tuple[str, str, str | None], str], dict[str, tuple[int, int, set[str]]]]:
    """explain's decisions (principal access listing exactly the datasets they allow) and
    exposure's counts and excess, as of `at`."""
    decisions = {}
    for leaf, dataset, purpose in itertools.product(ex.leaves, ex.datasets, ASKED_PURPOSES):
        params = {"principal": leaf, "dataset": dataset, "at": at.isoformat()}
        if purpose is not None:
            params["purpose"] = purpose
        r = await client.get("/v1/explain", params=params, headers=headers)
        assert r.status_code == 200, r.text
        decisions[(leaf, dataset, purpose)] = r.json()["decision"]
    for leaf in ex.leaves:
        r = await client.get(
            f"/v1/principals/{leaf}/access", params={"at": at.isoformat()}, headers=headers
        )
        assert r.status_code == 200, r.text
        readable = {item["dataset"] for item in r.json()["items"]}
        assert readable == {
            d for d in ex.datasets for q in ASKED_PURPOSES if decisions[(leaf, d, q)] == "allow"
        }, leaf
    exposure = {}
    for dataset in ex.datasets:
        params = {"at": at.isoformat(), "limit": "1000"}
        r = await client.get(f"/v1/datasets/{dataset}/exposure", params=params, headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        excess = {item["principal"] for item in body["items"]}
        exposure[dataset] = (body["effective_count"], body["intended_count"], excess)
    return decisions, exposure


def reference(
    ex: Example,
    policy: tuple[list[Rule], list[tuple[str, str]], dict[str, list[str]]],
    at: datetime,
) -> tuple[dict[tuple[str, str, str | None], str], dict[str, tuple[int, int, set[str]]]]:
    """What a plain Casbin enforcer over the policy as it was at `at` answers."""
    rules, links, audiences = policy
    enforcer = casbin_enforcer(rules, links)
    roles = enforcer.get_role_manager()
    now = at.timestamp()
    decisions = {
        (leaf, dataset, q): "allow"
        if enforcer.enforce(leaf, dataset, "read", q or "", now)
        else "deny"
        for leaf, dataset, q in itertools.product(ex.leaves, ex.datasets, ASKED_PURPOSES)
    }
    # the principals the policy knows of: those its rules, links and audiences name
    known = {p for link in links for p in link} | {r.sub for r in rules}
    known |= {p for audience in audiences.values() for p in audience}
    universe = {p for p in known if not p.startswith("group:")}
    exposure = {}
    for dataset in ex.datasets:
        effective = {
            p
            for p in universe
            if any(enforcer.enforce(p, dataset, "read", q, now) for q in ("", "train", "eval"))
        }
        intended = {p for p in universe if any(roles.has_link(p, a) for a in audiences[dataset])}
        exposure[dataset] = (len(effective), len(intended), effective - intended)
    return decisions, exposure


EXAMPLES = itertools.count()


@examples(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(sequence=steps)
def test_explain_and_exposure_at_every_instant_equal_casbin_on_the_policy_then(
    served: Served, admin_headers: dict[str, str], sequence: list[Step]
) -> None:
    ex = Example(next(EXAMPLES))
    client = served.client
    for dataset in ex.datasets:
        r = served.run(
            client.put(
                f"/v1/datasets/{dataset}",
                json=dataset_body(ex.audiences[dataset]),
                headers=admin_headers,
            )
        )
        assert r.status_code == 201, r.text
    seen = [(datetime.now(UTC), ex.frozen())]
    for step in sequence:
        served.run(run_step(client, admin_headers, ex, step))
        seen.append((datetime.now(UTC), ex.frozen()))
    for at, policy in seen:
        assert served.run(answers(client, admin_headers, ex, at)) == reference(ex, policy, at)
