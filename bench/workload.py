"""The benchmark's organisation, policy and check requests, generated from a seed.

Organisation (defaults): 10,000 users ``user:u{i}``, each in one of 100 teams ``group:team-{t}``
(``t = i % 100``); team ``t`` is in department ``group:dept-{t % 10}``; every department is in
``group:all``. Datasets ``d{f}.t{j}`` (100 families of 10 tables), each owned by and meant for
``group:team-{f % 100}``.

Policy: exactly ``grants`` unique ``read`` grants, in fixed proportions (see `GRANT_MIX`):
``prefix.*`` patterns and exact datasets, to users, teams, departments and everyone, allow and
deny. Which principal and dataset each grant names is drawn from the seed.

`Reference` decides with Casbin's semantics for ``policies/model.conf`` (a matching deny wins,
``keyMatch`` prefix patterns, groups through nested ``g`` links) so that the request mix can be
balanced between allow and deny, and so that every target's answers can be checked against it.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property

ALLOW = "allow"
DENY = "deny"
ACTION = "read"
EVERYONE = "all"  # bare id of the group that holds every department


@dataclass(frozen=True)
class Shape:
    users: int = 10_000
    teams: int = 100
    departments: int = 10
    families: int = 100
    tables: int = 10
    grants: int = 10_000
    seed: int = 1


@dataclass(frozen=True)
class Grant:
    principal: str  # "user:u1" or "group:team-3"
    resource: str  # "d4.t7", "d4.*" or "*"
    effect: str  # "allow" | "deny"


@dataclass(frozen=True)
class Check:
    principal: str
    dataset: str
    allowed: bool  # the reference decision
    by_deny: bool = False  # denied because a deny grant matched (rather than no allow)


def key_match(key: str, pattern: str) -> bool:
    """Casbin's keyMatch: equality, or a raw prefix test on the text before the first ``*``."""
    star = pattern.find("*")
    if star == -1:
        return key == pattern
    return key.startswith(pattern[:star])


@dataclass
class Org:
    shape: Shape
    users: list[str] = field(init=False)
    datasets: list[str] = field(init=False)
    # bare group id -> its direct members (full principal ids), leaves first
    memberships: dict[str, list[str]] = field(init=False)

    def __post_init__(self) -> None:
        s = self.shape
        self.users = [f"user:u{i}" for i in range(s.users)]
        self.datasets = [f"d{f}.t{j}" for f in range(s.families) for j in range(s.tables)]
        teams: dict[str, list[str]] = {self.team(t): [] for t in range(s.teams)}
        for i, user in enumerate(self.users):
            teams[self.team(i % s.teams)].append(user)
        departments: dict[str, list[str]] = {self.department(d): [] for d in range(s.departments)}
        for t in range(s.teams):
            departments[self.department(t % s.departments)].append(f"group:{self.team(t)}")
        everyone = {EVERYONE: [f"group:{d}" for d in departments]}
        self.memberships = {**teams, **departments, **everyone}

    @staticmethod
    def team(t: int) -> str:
        return f"team-{t}"

    @staticmethod
    def department(d: int) -> str:
        return f"dept-{d}"

    def family(self, f: int) -> str:
        return f"d{f}"

    def owner(self, dataset: str) -> str:
        family = int(dataset.split(".", 1)[0][1:])
        return f"group:{self.team(family % self.shape.teams)}"

    def links(self) -> list[tuple[str, str]]:
        """Casbin g rules: (member, group) with full principal ids."""
        return [
            (member, f"group:{group}")
            for group, members in self.memberships.items()
            for member in members
        ]

    @cached_property
    def users_under(self) -> dict[str, list[str]]:
        """Full principal id -> every user it covers (a user covers itself)."""
        covered: dict[str, list[str]] = {user: [user] for user in self.users}
        for group, members in self.memberships.items():  # leaves first, so members are known
            covered[f"group:{group}"] = [u for m in members for u in covered[m]]
        return covered


# (kind, fraction of all grants); "user allow exact" takes whatever is left.
GRANT_MIX: tuple[tuple[str, float], ...] = (
    ("everyone allow prefix", 0.0002),
    ("dept allow prefix", 0.004),
    ("dept deny exact", 0.001),
    ("team allow prefix", 0.04),
    ("team allow exact", 0.15),
    ("team deny exact", 0.03),
    ("user allow prefix", 0.05),
    ("user deny exact", 0.08),
)


def generate_grants(org: Org, rng: random.Random) -> list[Grant]:
    s = org.shape

    def dataset_in(family: int) -> str:
        return f"d{family}.t{rng.randrange(s.tables)}"

    def any_dataset() -> str:
        return rng.choice(org.datasets)

    def team_id() -> tuple[int, str]:
        t = rng.randrange(s.teams)
        return t, f"group:{org.team(t)}"

    def user_id() -> tuple[int, str]:
        i = rng.randrange(s.users)
        return i, org.users[i]

    def team_prefix() -> Grant:
        t, team = team_id()
        family = t % s.families if rng.random() < 0.5 else rng.randrange(s.families)
        return Grant(team, f"d{family}.*", ALLOW)

    def user_deny() -> Grant:
        i, user = user_id()  # in the home family of the user's team, which it often may read
        return Grant(user, dataset_in((i % s.teams) % s.families), DENY)

    def team_deny() -> Grant:
        t, team = team_id()
        return Grant(team, dataset_in(t % s.families), DENY)

    makers: dict[str, Callable[[], Grant]] = {
        "everyone allow prefix": lambda: Grant(
            f"group:{EVERYONE}", f"d{rng.randrange(s.families)}.*", ALLOW
        ),
        "dept allow prefix": lambda: Grant(
            f"group:{org.department(rng.randrange(s.departments))}",
            f"d{rng.randrange(s.families)}.*",
            ALLOW,
        ),
        "dept deny exact": lambda: Grant(
            f"group:{org.department(rng.randrange(s.departments))}", any_dataset(), DENY
        ),
        "team allow prefix": team_prefix,
        "team allow exact": lambda: Grant(team_id()[1], any_dataset(), ALLOW),
        "team deny exact": team_deny,
        "user allow prefix": lambda: Grant(user_id()[1], f"d{rng.randrange(s.families)}.*", ALLOW),
        "user deny exact": user_deny,
    }
    grants: dict[Grant, None] = {}

    def draw(make: Callable[[], Grant], count: int) -> None:
        target = len(grants) + count
        for _attempt in range(count * 20):
            if len(grants) >= target:
                return
            grants.setdefault(make(), None)

    for kind, fraction in GRANT_MIX:
        draw(makers[kind], round(fraction * s.grants))
    draw(lambda: Grant(user_id()[1], any_dataset(), ALLOW), s.grants - len(grants))
    if len(grants) != s.grants:
        raise ValueError(
            f"could not draw {s.grants} unique grants for {s.users} users and "
            f"{len(org.datasets)} datasets; make the organisation larger"
        )
    result = list(grants)
    rng.shuffle(result)
    return result


class Reference:
    """Casbin's decision for policies/model.conf, for grants without expiry."""

    def __init__(self, org: Org, grants: Iterable[Grant]) -> None:
        self._parents: dict[str, list[str]] = {}
        for member, group in org.links():
            self._parents.setdefault(member, []).append(group)
        self._by_principal: dict[str, list[Grant]] = {}
        for grant in grants:
            self._by_principal.setdefault(grant.principal, []).append(grant)
        self._ancestors: dict[str, tuple[str, ...]] = {}

    def ancestors(self, principal: str) -> tuple[str, ...]:
        """The principal and every group it reaches (Casbin's g(), within its 10 levels)."""
        found = self._ancestors.get(principal)
        if found is None:
            seen = {principal: None}
            frontier = [principal]
            for _level in range(9):
                frontier = [g for m in frontier for g in self._parents.get(m, ()) if g not in seen]
                seen.update(dict.fromkeys(frontier))
                if not frontier:
                    break
            found = self._ancestors[principal] = tuple(seen)
        return found

    def decide(self, principal: str, dataset: str) -> Check:
        allowed = False
        for subject in self.ancestors(principal):
            for grant in self._by_principal.get(subject, ()):
                if key_match(dataset, grant.resource):
                    if grant.effect == DENY:
                        return Check(principal, dataset, allowed=False, by_deny=True)
                    allowed = True
        return Check(principal, dataset, allowed=allowed)


@dataclass
class Workload:
    org: Org
    grants: list[Grant]
    reference: Reference
    checks: list[Check]

    def describe(self) -> str:
        effects = Counter(g.effect for g in self.grants)
        patterns = sum(1 for g in self.grants if "*" in g.resource)
        to_groups = sum(1 for g in self.grants if g.principal.startswith("group:"))
        allowed = sum(1 for c in self.checks if c.allowed)
        by_deny = sum(1 for c in self.checks if c.by_deny)
        s = self.org.shape
        return (
            f"{s.users} users in {s.teams} teams < {s.departments} departments < group:all; "
            f"{len(self.org.datasets)} datasets; {len(self.grants)} grants "
            f"({effects[ALLOW]} allow, {effects[DENY]} deny; {patterns} prefix patterns; "
            f"{to_groups} to groups); {len(self.checks)} check bodies "
            f"({allowed} allow, {len(self.checks) - allowed} deny, {by_deny} of them by a deny "
            "grant)"
        )


def generate_checks(
    org: Org, grants: list[Grant], reference: Reference, count: int, rng: random.Random
) -> list[Check]:
    """`count` distinct checks, half allowed and half denied, in random order."""
    allows = [g for g in grants if g.effect == ALLOW]
    denies = [g for g in grants if g.effect == DENY]
    tables = org.shape.tables

    def covered_dataset(grant: Grant) -> str:
        if grant.resource == "*":
            return rng.choice(org.datasets)
        if grant.resource.endswith(".*"):
            return f"{grant.resource[:-2]}.t{rng.randrange(tables)}"
        return grant.resource

    def candidate() -> tuple[str, str]:
        roll = rng.random()
        if roll < 0.4 or (not denies and roll < 0.6):
            grant = rng.choice(allows)  # mostly allowed, sometimes denied by a deny grant
        elif roll < 0.6:
            grant = rng.choice(denies)
        else:  # anyone, anything: mostly no grant at all
            return rng.choice(org.users), rng.choice(org.datasets)
        return rng.choice(org.users_under[grant.principal]), covered_dataset(grant)

    want = {True: count - count // 2, False: count // 2}
    picked: dict[bool, dict[tuple[str, str], Check]] = {True: {}, False: {}}
    for _attempt in range(count * 200):
        if all(len(picked[k]) >= want[k] for k in want):
            break
        principal, dataset = candidate()
        check = reference.decide(principal, dataset)
        bucket = picked[check.allowed]
        if len(bucket) < want[check.allowed]:
            bucket.setdefault((principal, dataset), check)
    if any(len(picked[k]) < want[k] for k in want):
        raise ValueError("could not draw a balanced set of checks from this policy")
    checks = [*picked[True].values(), *picked[False].values()]
    rng.shuffle(checks)
    return checks


def build(shape: Shape, checks: int = 2000) -> Workload:
    rng = random.Random(shape.seed)
    org = Org(shape)
    grants = generate_grants(org, rng)
    reference = Reference(org, grants)
    return Workload(org, grants, reference, generate_checks(org, grants, reference, checks, rng))
