"""The exposure analyser must agree with the Casbin enforcer on every principal and dataset."""

import contextlib
import dataclasses
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence

import pytest
from casbin.util import key_match as casbin_key_match
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.exposure.analyser import (
    MAX_LINKS,
    Directory,
    ExposureAnalyser,
    GrantExcess,
    Reanalysis,
    Within,
    datasets_covered,
    is_leaf,
)
from app.exposure.analyser import _directory as directory_module
from app.policy.decision_index import (
    CASBIN_MAX_HIERARCHY_LEVEL,
    DecisionIndex,
    Rule,
    casbin_enforcer,
    is_live,
)
from app.policy.holds import EVERYTHING, hold_rules

USERS = [f"user:u{i}" for i in range(6)]
SERVICES = ["service:s0", "service:s1"]
GROUPS = [f"group:g{i}" for i in range(12)]  # 12: chains of 10-12 links, past the depth limit
GHOST = "user:ghost"  # only ever a rule subject
EMPTY = "group:empty"  # a rule subject with no members
OUTSIDER = "service:outsider"  # only ever in intended audiences
SUBJECTS = [*USERS, *SERVICES, *GROUPS, GHOST, EMPTY]
AUDIENCE_MEMBERS = [*SUBJECTS, OUTSIDER]
# Valid dataset ids plus two odd ones ("a." and "ab") that only raw keyMatch prefixes reach.
DATASETS = ["a", "a.b", "a.b.c", "a.bc", "b.x", "a.", "ab"]
ACTIONS = ["read", "write", "export"]
RESOURCES = [
    *["a", "a.b", "a.b.c", "a.bc", "b.x"],  # exact dataset ids
    *["a.*", "a.b.*", "b.*", "a.b.c.*", "*"],  # prefix patterns and everything
    *["a*", "a.b*", "a.*.c", "a."],  # odd patterns: keyMatch is a raw string prefix
]
# now is one of NOWS; expiries straddle it, including exp == now (expired: now < exp is false).
NOWS = [999.0, 1000.0, 1500.0]
EXPIRIES = ["", "", "", "500.0", "1000.0", "1000.5", "2000", "1e3", "inf", "nan"]
# Purposes rules name ("*": any), and the purposes a check may name: none, those the rules
# name, and one no rule names (standing for every other purpose).
RULE_PURPOSES = ["*", "*", "*", "train", "audit"]
CHECK_PURPOSES = ["", "train", "audit", "other"]

Link = tuple[str, str]


# -- helpers ----------------------------------------------------------------------------------


def chain(*principals: str) -> list[Link]:
    return list(itertools.pairwise(principals))


def allow(
    sub: str, obj: str, rule_id: str = "1", act: str = "read", exp: str = "", purpose: str = "*"
) -> Rule:
    return Rule(sub=sub, obj=obj, act=act, eft="allow", exp=exp, id=rule_id, purpose=purpose)


def deny(
    sub: str, obj: str, rule_id: str = "2", act: str = "read", exp: str = "", purpose: str = "*"
) -> Rule:
    return Rule(sub=sub, obj=obj, act=act, eft="deny", exp=exp, id=rule_id, purpose=purpose)


def casbin_readers(
    rules: Sequence[Rule], links: Sequence[Link], dataset: str, now: float, universe: Iterable[str]
) -> frozenset[str]:
    enforcer = casbin_enforcer(rules, links)
    return frozenset(
        p
        for p in universe
        if any(enforcer.enforce(p, dataset, "read", q, now) for q in CHECK_PURPOSES)
    )


class Reference:
    """Brute force with pycasbin: its enforcer, its role manager's g() and its keyMatch."""

    def __init__(self, rules: Sequence[Rule], links: Sequence[Link], extras: Iterable[str]) -> None:
        self.rules = rules
        self.links = links
        self.enforcer = casbin_enforcer(rules, links)
        self.role_manager = self.enforcer.get_role_manager()
        principals = [*itertools.chain.from_iterable(links), *(r.sub for r in rules), *extras]
        self.universe = frozenset(p for p in principals if is_leaf(p))
        self._reaches: dict[Link, bool] = {}

    def reaches(self, principal: str, subject: str) -> bool:
        key = (principal, subject)
        if key not in self._reaches:
            self._reaches[key] = bool(self.role_manager.has_link(principal, subject))
        return self._reaches[key]

    def effective(self, dataset: str, now: float) -> frozenset[str]:
        """Who the enforcer lets read for some purpose (those that matter, and more)."""
        return frozenset(
            p
            for p in self.universe
            if any(self.enforcer.enforce(p, dataset, "read", q, now) for q in CHECK_PURPOSES)
        )

    def intended(self, audience: Iterable[str]) -> frozenset[str]:
        listed = list(audience)
        return frozenset(p for p in self.universe if any(self.reaches(p, a) for a in listed))

    def live_allows(self, dataset: str, now: float) -> list[Rule]:
        return [
            r
            for r in self.rules
            if r.act == "read"
            and r.eft == "allow"
            and casbin_key_match(dataset, r.obj)
            and is_live(r.exp, now)
        ]

    def denied(self, principal: str, dataset: str, now: float, purpose: str) -> bool:
        """Whether a live deny for `purpose` (or any) on `dataset` reaches `principal`."""
        return any(
            r.act == "read"
            and r.eft == "deny"
            and r.for_purpose(purpose)
            and casbin_key_match(dataset, r.obj)
            and is_live(r.exp, now)
            and self.reaches(principal, r.sub)
            for r in self.rules
        )

    def grant_excess(
        self, dataset: str, now: float, excess: frozenset[str]
    ) -> dict[str, frozenset[str]]:
        """Each live allow's excess: the principals in the excess it reaches that no deny
        for its purpose stops (for a rule for any purpose: no deny for any purpose, since
        it lets them in for every other)."""
        found: dict[str, frozenset[str]] = {}
        for r in self.live_allows(dataset, now):
            purpose = "other" if r.purpose == "*" else r.purpose
            bits = frozenset(
                p
                for p in excess
                if self.reaches(p, r.sub) and not self.denied(p, dataset, now, purpose)
            )
            found[r.id] = found.get(r.id, frozenset()) | bits
        return found


# -- property tests against pycasbin -----------------------------------------------------------

Policy = tuple[list[Rule], list[Link], float, dict[str, list[str]]]


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    """Random directory, rules, time and intended audiences (at most 10 leaves)."""
    # Memberships of users and services (hypothesis draws are the slow part: few, large ones).
    leaves_in_groups = st.tuples(st.sampled_from(USERS + SERVICES), st.sampled_from(GROUPS))
    links: list[Link] = draw(st.lists(leaves_in_groups, max_size=12))
    # Often a deep chain from a user through distinct groups: 8 to 12 links, so that groups just
    # inside (9 links), at (10) and past Casbin's depth limit occur.
    if draw(st.integers(min_value=0, max_value=2)):
        length = draw(st.integers(min_value=8, max_value=len(GROUPS)))
        order = draw(st.permutations(GROUPS))
        links.extend(chain(draw(st.sampled_from(USERS)), *order[:length]))
    # Random nesting between groups: cycles and self-links included.
    links.extend(
        draw(st.lists(st.tuples(st.sampled_from(GROUPS), st.sampled_from(GROUPS)), max_size=8))
    )
    # Now and then a link Casbin tolerates but the API would not make: a leaf as a "group".
    if not draw(st.integers(min_value=0, max_value=5)):
        links.append((draw(st.sampled_from(SUBJECTS)), draw(st.sampled_from(USERS + SERVICES))))
    links = list(dict.fromkeys(links))

    fields = st.tuples(
        st.sampled_from(SUBJECTS),
        st.sampled_from(RESOURCES),
        st.sampled_from(["read", "read", *ACTIONS]),
        st.sampled_from(["allow", "allow", "deny"]),
        st.sampled_from(EXPIRIES),
        st.sampled_from(RULE_PURPOSES),
    )
    rules = [
        Rule(sub=sub, obj=obj, act=act, eft=eft, exp=exp, id=str(i), purpose=purpose)
        for i, (sub, obj, act, eft, exp, purpose) in enumerate(draw(st.lists(fields, max_size=12)))
    ]
    # Holds: the automatic denies of a principal on a dataset, or of an inactive user on `*`.
    held = st.tuples(st.sampled_from(USERS + SERVICES), st.sampled_from([*DATASETS, EVERYTHING]))
    for n, (sub, obj) in enumerate(draw(st.lists(held, max_size=3, unique=True)), start=1):
        rules.extend(hold_rules(n, sub, obj))
    now = draw(st.sampled_from(NOWS))
    # Three audiences shared out among the datasets.
    audience = st.lists(st.sampled_from(AUDIENCE_MEMBERS), max_size=3, unique=True)
    shared = [draw(audience) for _ in range(3)]
    audiences = {dataset: shared[i % 3] for i, dataset in enumerate(DATASETS)}
    return rules, links, now, audiences


def audience_members(audiences: dict[str, list[str]]) -> list[str]:
    return [p for audience in audiences.values() for p in audience]


# Every leaf of the universe (<= 10) x every dataset (7) against pycasbin's enforce, plus the
# intended expansion, per-grant excess, reach paths, and the directory's member sets and ancestors:
# 7 (policy, dataset) comparisons per example: 7,000 per run, covering about 34,000 (principal,
# dataset) decisions compared with Enforcer.enforce (measured: 33,936; 3-6 s on a shared VM).
@settings(
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(policies())
def test_analyser_agrees_with_casbin_on_random_policies(policy: Policy) -> None:
    rules, links, now, audiences = policy
    extras = audience_members(audiences)
    analyser = ExposureAnalyser(rules, links, extra_principals=extras)
    reference = Reference(rules, links, extras)
    index = DecisionIndex(rules, links)
    assert analyser.universe == reference.universe

    for dataset in DATASETS:
        effective = analyser.effective(dataset, "read", now)
        assert effective == reference.effective(dataset, now), dataset

        intended = analyser.intended(audiences[dataset])
        assert intended == reference.intended(audiences[dataset]), dataset
        excess = effective - intended
        grants = analyser.grant_excess(dataset, "read", now, intended)
        assert grants == reference.grant_excess(dataset, now, excess), dataset

        def blockers(purpose: str, dataset: str = dataset) -> frozenset[str]:
            return analyser.blockers(dataset, "read", now, audiences[dataset], purpose)

        assert_lowest_outside(analyser.directory, reference, dataset, now, grants, blockers)

        exposure = analyser.exposure(
            dataset, "read", now, analyser.intended_bits(audiences[dataset])
        )
        assert exposure.effective_count == len(effective)
        assert exposure.excess_count == len(excess)
        assert frozenset(analyser.directory.names(exposure.excess)) == excess

        covering = [
            r
            for r in rules
            if r.act == "read" and r.eft in ("allow", "deny") and casbin_key_match(dataset, r.obj)
        ]
        assert sorted(analyser.rules_covering(dataset, "read"), key=repr) == sorted(
            set(covering), key=repr
        )
        assert_reach(analyser, reference, index, dataset, now, effective)
    assert_directory(analyser.directory, index, reference)


def assert_lowest_outside(
    directory: Directory,
    reference: Reference,
    dataset: str,
    now: float,
    grants: dict[str, frozenset[str]],
    blockers: Callable[[str], frozenset[str]],
) -> None:
    """Each grant's excess, drawn from the bottom up above any bound, as the full sets give it."""
    allows = reference.live_allows(dataset, now)
    ids = [rule.id for rule in allows]
    for rule in allows:
        if ids.count(rule.id) > 1:
            continue  # the grant's excess is several rules'
        numbered = directory.leaf_numbers(grants[rule.id])
        numbers = sorted(n for n in numbered if n is not None)
        assert len(numbers) == len(numbered)
        for above in {-1, *numbers[:3]}:
            expected = [n for n in numbers if n > above][:2]
            found = directory.lowest_outside(rule.sub, above, 2, blockers(rule.purpose))
            assert found == expected, rule


def assert_directory(directory: Directory, index: DecisionIndex, reference: Reference) -> None:
    """Ancestors as DecisionIndex finds them; member sets as pycasbin's role manager admits them."""
    for principal in AUDIENCE_MEMBERS:
        assert directory.ancestors(principal) == index.ancestors(principal), principal
    for principal in AUDIENCE_MEMBERS:
        universe = reference.universe | {principal} if is_leaf(principal) else reference.universe
        expected = frozenset(p for p in universe if reference.reaches(p, principal))
        assert directory.members(principal) == expected, principal


def assert_reach(
    analyser: ExposureAnalyser,
    reference: Reference,
    index: DecisionIndex,
    dataset: str,
    now: float,
    effective: frozenset[str],
) -> None:
    """Every effective principal is listed with the live allows it reaches and shortest paths."""
    reach = analyser.reach(dataset, "read", now)
    assert set(reach) == effective
    link_set = set(reference.links)
    allows = reference.live_allows(dataset, now)
    for principal, found in reach.items():
        expected = {r.id for r in allows if reference.reaches(principal, r.sub)}
        assert {rule.id for rule, _path in found} == expected
        ancestors = index.ancestors(principal)
        for rule, path in found:
            assert path == ancestors[rule.sub]
            assert path[0] == principal and path[-1] == rule.sub
            assert len(path) <= CASBIN_MAX_HIERARCHY_LEVEL
            assert all(link in link_set for link in itertools.pairwise(path))


# -- incremental changes ------------------------------------------------------------------------

Change = tuple[str, Rule | Link | int]


@contextlib.contextmanager
def module_setting(name: str, value: int) -> Iterator[None]:
    """The analyser with one of its size limits set to `value` (both of its paths tested)."""
    saved = getattr(directory_module, name)
    setattr(directory_module, name, value)
    try:
        yield
    finally:
        setattr(directory_module, name, saved)


@st.composite
def changes(draw: st.DrawFn) -> Change:
    kind = draw(st.sampled_from(["add_rule", "remove_rule", "add_link", "remove_link"]))
    if kind == "add_rule":
        rule = Rule(
            sub=draw(st.sampled_from(SUBJECTS)),
            obj=draw(st.sampled_from(RESOURCES)),
            act=draw(st.sampled_from(["read", "read", *ACTIONS])),
            eft=draw(st.sampled_from(["allow", "allow", "deny"])),
            exp=draw(st.sampled_from(EXPIRIES)),
            id="new",
            purpose=draw(st.sampled_from(RULE_PURPOSES)),
        )
        return kind, rule
    if kind == "add_link":
        member = draw(st.sampled_from(USERS + SERVICES + GROUPS))
        return kind, (member, draw(st.sampled_from(GROUPS)))
    return kind, draw(st.integers(min_value=0, max_value=50))


Reach = dict[str, list[tuple[Rule, tuple[str, ...]]]]
# dataset -> (effective, grant_excess, reach): what a fresh analyser must reproduce.
Snapshot = dict[str, tuple[frozenset[str], dict[str, frozenset[str]], Reach]]


def snapshot(analyser: ExposureAnalyser, now: float, audiences: dict[str, list[str]]) -> Snapshot:
    found: Snapshot = {}
    for dataset in DATASETS:
        exposure = analyser.exposure(
            dataset, "read", now, analyser.intended_bits(audiences[dataset])
        )
        assert exposure.excess_counts == {k: v.bit_count() for k, v in exposure.by_grant.items()}
        intended = analyser.intended(audiences[dataset])
        found[dataset] = (
            analyser.effective(dataset, "read", now),
            analyser.grant_excess(dataset, "read", now, intended),
            analyser.reach(dataset, "read", now),
        )
    return found


@pytest.mark.parametrize("reach_leaves", [0, directory_module.REACH_LEAVES])
@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(policies(), st.lists(changes(), min_size=1, max_size=6))
def test_incremental_changes_touch_only_what_their_reanalysis_names(
    reach_leaves: int, policy: Policy, steps: list[Change]
) -> None:
    with module_setting("REACH_LEAVES", reach_leaves):
        check_incremental_changes_touch_only_what_their_reanalysis_names(policy, steps)


def check_incremental_changes_touch_only_what_their_reanalysis_names(
    policy: Policy, steps: list[Change]
) -> None:
    rules, links, now, audiences = policy
    extras = audience_members(audiences)
    current_rules = list(dict.fromkeys(rules))
    current_links = list(links)
    analyser = ExposureAnalyser(current_rules, current_links, extras)
    before = snapshot(analyser, now, audiences)  # fills the memos that the changes invalidate

    for step, (kind, arg) in enumerate(steps):
        changed = analyser.copy()
        plan: Reanalysis
        if kind in ("add_rule", "remove_rule"):
            if kind == "add_rule":
                assert isinstance(arg, Rule)
                rule = dataclasses.replace(arg, id=f"new{step}")  # one id, one grant
                assert changed.add_rule(rule)
                assert not changed.add_rule(rule)
                current_rules.append(rule)
            else:
                if not current_rules:
                    continue
                assert isinstance(arg, int)
                rule = current_rules.pop(arg % len(current_rules))
                assert changed.remove_rule(rule)
                assert not changed.remove_rule(rule)
            plan = changed.reanalysis_for_rule(rule, DATASETS, "read")
            assert plan == analyser.reanalysis_for_rule(rule, DATASETS, "read")
        else:
            if kind == "add_link":
                assert isinstance(arg, tuple)
                link = arg
                if link in current_links:
                    assert not changed.add_link(*link)
                    continue
            else:
                if not current_links:
                    continue
                assert isinstance(arg, int)
                link = current_links[arg % len(current_links)]
            coarse = changed.datasets_affected_by_membership(link[1], DATASETS, audiences)
            if kind == "add_link":
                assert changed.add_link(*link)
                current_links.append(link)
            else:
                assert changed.remove_link(*link)
                current_links.remove(link)
            # The member-independent answer is the same before or after the change ...
            assert changed.datasets_affected_by_membership(link[1], DATASETS, audiences) == coarse
            assert set(coarse) == broader(changed, link[1], audiences)
            # ... and coarser than the plan from the actual difference.
            plan = changed.reanalysis_for_membership(
                analyser, [link[1]], DATASETS, audiences, "read"
            )
            assert set(plan.affected) <= set(coarse)

        after = snapshot(changed, now, audiences)
        assert_plan_covers_the_change(changed, plan, before, after, now, audiences)
        # The original is untouched by changes to its copy ...
        assert snapshot(analyser, now, audiences) == before
        # ... and the changed one answers like one built from scratch.
        fresh = ExposureAnalyser(current_rules, current_links, extras)
        assert snapshot(fresh, now, audiences) == after
        analyser, before = changed, after


# Replacing a group's members at once (PUT /v1/groups/{g}/members): one plan for many links.
@pytest.mark.parametrize("reach_leaves", [0, directory_module.REACH_LEAVES])
@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    policies(),
    st.sampled_from(GROUPS),
    st.lists(st.sampled_from(USERS + SERVICES + GROUPS), max_size=5, unique=True),
)
def test_membership_plan_covers_replacing_a_groups_members(
    reach_leaves: int, policy: Policy, group: str, members: list[str]
) -> None:
    with module_setting("REACH_LEAVES", reach_leaves):
        check_membership_plan_covers_replacing_a_groups_members(policy, group, members)


def check_membership_plan_covers_replacing_a_groups_members(
    policy: Policy, group: str, members: list[str]
) -> None:
    rules, links, now, audiences = policy
    extras = audience_members(audiences)
    analyser = ExposureAnalyser(rules, links, extras)
    before = snapshot(analyser, now, audiences)
    changed = analyser.copy()
    for member, parent in links:
        if parent == group and member not in members:
            assert changed.remove_link(member, group)
    for member in members:
        changed.add_link(member, group)
    # In the order the changed analyser holds them (paths break ties by link order).
    new_links = [(m, g) for m, g in links if g != group or m in members]
    new_links += [(m, group) for m in members if (m, group) not in links]
    plan = changed.reanalysis_for_membership(analyser, [group], DATASETS, audiences, "read")
    after = snapshot(changed, now, audiences)
    assert_plan_covers_the_change(changed, plan, before, after, now, audiences)
    # Within the leaves that moved, the small sets give each planned grant's change exactly.
    within = 0
    for member in {m for m, g in links if g == group} ^ set(members):
        within |= analyser.directory.leaf_bits(member) | changed.directory.leaf_bits(member)
    moved = Within(within)
    for dataset, planned in plan.grants.items():
        found = changed.grant_excess_within(
            analyser, moved, planned, dataset, "read", now, audiences[dataset]
        )
        names = changed.directory.names
        for rule_id, (now_shifted, then_shifted) in found.items():
            now_in, then_in = moved.unshifted(now_shifted), moved.unshifted(then_shifted)
            assert changed.directory.names_of(moved.numbers(now_shifted)) == names(now_in)
            assert not (now_in | then_in) & ~within
            now_all, then_all = after[dataset][1].get(rule_id), before[dataset][1].get(rule_id)
            assert frozenset(names(now_in)) == (now_all or frozenset()) & frozenset(names(within))
            assert frozenset(names(then_in)) == (then_all or frozenset()) & frozenset(names(within))
            assert (now_all or frozenset()) - frozenset(names(within)) == (
                then_all or frozenset()
            ) - frozenset(names(within))
    fresh = ExposureAnalyser(rules, new_links, extras)
    assert snapshot(fresh, now, audiences) == after


def broader(analyser: ExposureAnalyser, group: str, audiences: dict[str, list[str]]) -> set[str]:
    """Datasets covered by rules on `group` or above, or meant for them (any member moving)."""
    above = analyser.directory.ancestors(group)
    return {
        d
        for rule in analyser.rules_affected_by_membership(group)
        for d in datasets_covered(rule.obj, DATASETS)
    } | {d for d in DATASETS if set(audiences[d]) & set(above)}


def assert_plan_covers_the_change(
    analyser: ExposureAnalyser,
    plan: Reanalysis,
    before: Snapshot,
    after: Snapshot,
    now: float,
    audiences: dict[str, list[str]],
) -> None:
    assert plan.affected == tuple(d for d in DATASETS if d in plan.grants)
    for dataset in DATASETS:
        rules = plan.grants.get(dataset, ())
        if not rules:
            # Paths may change (a shortcut), exposure may not.
            assert after[dataset][:2] == before[dataset][:2], dataset
            continue
        # Only the named grants' excess changed; each is what grant_excess_bits says.
        ids = {rule.id for rule in rules}
        grants_before, grants_after = before[dataset][1], after[dataset][1]
        assert {k: v for k, v in grants_after.items() if k not in ids} == {
            k: v for k, v in grants_before.items() if k not in ids
        }
        intended = analyser.intended_bits(audiences[dataset])
        found = analyser.grant_excess_bits(rules, dataset, "read", now, intended)
        assert {k: frozenset(analyser.directory.names(v.bits)) for k, v in found.items()} == {
            k: v for k, v in grants_after.items() if k in ids
        }
        assert all(v.count == v.bits.bit_count() for v in found.values())


# -- scenarios ---------------------------------------------------------------------------------

ACTIVITY = [f"employee_activity.{t}" for t in ("keystrokes", "mouse_movements", "transcripts")]


def test_deny_on_subgroup_removes_its_members_from_effective() -> None:
    links = [
        ("user:alice", "group:eng"),
        ("user:bob", "group:eng"),
        ("user:carol", "group:contractors"),
        ("group:contractors", "group:eng"),
        ("group:eng", "group:all"),
        ("user:dave", "group:all"),
        ("user:erin", "group:temps"),
        ("group:temps", "group:contractors"),  # nested below the denied group
    ]
    rules = [
        allow("group:all", "employee_activity.*", rule_id="broad"),
        deny("group:contractors", "employee_activity.keystrokes", rule_id="no-contractors"),
    ]
    analyser = ExposureAnalyser(rules, links)

    keystrokes = analyser.effective("employee_activity.keystrokes", "read", 0.0)
    transcripts = analyser.effective("employee_activity.transcripts", "read", 0.0)

    assert keystrokes == {"user:alice", "user:bob", "user:dave"}
    assert transcripts == keystrokes | {"user:carol", "user:erin"}
    expected = {
        "employee_activity.keystrokes": keystrokes,
        "employee_activity.transcripts": transcripts,
    }
    for dataset, effective in expected.items():
        assert effective == casbin_readers(rules, links, dataset, 0.0, analyser.universe)
    # A deny on a user beats an allow on the same user too.
    direct = [*rules, allow("user:carol", "employee_activity.keystrokes", rule_id="carol")]
    assert "user:carol" not in ExposureAnalyser(direct, links).effective(
        "employee_activity.keystrokes", "read", 0.0
    )


def test_pattern_grant_reaches_every_dataset_under_prefix() -> None:
    links = [("user:alice", "group:all-employees"), ("service:trainer", "group:all-employees")]
    rules = [allow("group:all-employees", "employee_activity.*", rule_id="broad")]
    analyser = ExposureAnalyser(rules, links)
    others = ["employee_activity", "employee_activity_archive.x", "hr.employee_activity.x"]

    for dataset in ACTIVITY:
        assert analyser.rules_covering(dataset, "read") == rules
        assert analyser.effective(dataset, "read", 0.0) == {"user:alice", "service:trainer"}
    for dataset in others:
        assert analyser.rules_covering(dataset, "read") == []
        assert analyser.effective(dataset, "read", 0.0) == frozenset()
    assert analyser.effective(ACTIVITY[0], "write", 0.0) == frozenset()
    assert datasets_covered("employee_activity.*", [*ACTIVITY, *others]) == ACTIVITY
    assert datasets_covered("*", others) == others
    assert datasets_covered(ACTIVITY[1], [*ACTIVITY, *others]) == [ACTIVITY[1]]


def test_excess_excludes_intended_audience() -> None:
    links = [
        ("user:alice", "group:mci-research"),
        ("user:bob", "group:mci-research"),
        ("group:mci-research", "group:all-employees"),
        ("user:carol", "group:sales"),
        ("user:dave", "group:sales"),
        ("group:sales", "group:all-employees"),
    ]
    rules = [
        allow("group:all-employees", "employee_activity.*", rule_id="broad"),
        allow("group:mci-research", "employee_activity.*", rule_id="research"),
        allow("service:trainer", "employee_activity.keystrokes", rule_id="trainer"),
        allow("user:dave", "employee_activity.keystrokes", rule_id="dave"),
    ]
    analyser = ExposureAnalyser(rules, links)
    intended = analyser.intended(["group:mci-research", "service:trainer"])
    assert intended == {"user:alice", "user:bob", "service:trainer"}

    excess = analyser.grant_excess("employee_activity.keystrokes", "read", 0.0, intended)

    assert excess == {
        "broad": {"user:carol", "user:dave"},
        "research": frozenset(),
        "trainer": frozenset(),
        "dave": {"user:dave"},  # reached by two grants: under both
    }
    exposure = analyser.exposure(
        "employee_activity.keystrokes",
        "read",
        0.0,
        analyser.intended_bits(["group:mci-research", "service:trainer"]),
    )
    assert (exposure.effective_count, exposure.excess_count) == (5, 2)
    assert analyser.directory.sample(exposure.by_grant["broad"], 1)[0] in {
        "user:carol",
        "user:dave",
    }
    reach = analyser.reach(
        "employee_activity.keystrokes", "read", 0.0, ["user:dave", "user:nobody"]
    )
    assert sorted(reach["user:dave"], key=repr) == sorted(
        [
            (rules[0], ("user:dave", "group:sales", "group:all-employees")),
            (rules[3], ("user:dave",)),
        ],
        key=repr,
    )
    assert set(reach) == {"user:dave"}


def test_grant_beyond_casbin_depth_reaches_nobody() -> None:
    groups = [f"group:level{i}" for i in range(1, 12)]
    links = chain("user:alice", *groups)  # group:level{n} is n links above user:alice
    inside = allow("group:level9", "a.b", rule_id="inside")
    beyond = allow("group:level10", "a.b", rule_id="beyond")

    analyser = ExposureAnalyser([inside, beyond], links)

    assert analyser.effective("a.b", "read", 0.0) == {"user:alice"}
    assert analyser.grant_excess("a.b", "read", 0.0, frozenset()) == {
        "inside": {"user:alice"},
        "beyond": frozenset(),
    }
    assert analyser.directory.members("group:level10") == frozenset()
    assert analyser.directory.members("group:level11") == frozenset()
    assert not casbin_enforcer([beyond], links).enforce("user:alice", "a.b", "read", "", 0.0)
    only_beyond = ExposureAnalyser([beyond], links)
    assert only_beyond.effective("a.b", "read", 0.0) == frozenset()
    # The limit is on the shortest path: a shortcut brings the same group within reach.
    only_beyond.add_link("user:alice", "group:level8")
    assert only_beyond.effective("a.b", "read", 0.0) == {"user:alice"}
    assert only_beyond.paths_for("user:alice", "a.b", "read", 0.0) == [
        (beyond, ("user:alice", "group:level8", "group:level9", "group:level10"))
    ]
    # An intended audience naming a group past the limit expands to nobody as well.
    assert analyser.intended(["group:level10"]) == frozenset()
    assert MAX_LINKS == CASBIN_MAX_HIERARCHY_LEVEL - 1 == 9


def test_expired_grant_reaches_nobody() -> None:
    links = [("user:alice", "group:eng")]
    grant = allow("group:eng", "a.b", rule_id="temp", exp="1000.0")
    analyser = ExposureAnalyser([grant], links)

    assert analyser.effective("a.b", "read", 999.5) == {"user:alice"}
    for now in [1000.0, 1000.5, 5000.0]:  # expiry is exclusive: now == exp is already expired
        assert analyser.effective("a.b", "read", now) == frozenset()
        assert analyser.grant_excess("a.b", "read", now, frozenset()) == {}
        assert analyser.paths_for("user:alice", "a.b", "read", now) == []
    assert analyser.rules_covering("a.b", "read") == [grant]  # still there, just not live
    # An expired deny denies nothing either.
    rules = [
        allow("group:eng", "a.b", rule_id="1"),
        deny("user:alice", "*", exp="1000", rule_id="2"),
    ]
    analyser = ExposureAnalyser(rules, links)
    assert analyser.effective("a.b", "read", 999.0) == frozenset()
    assert analyser.effective("a.b", "read", 1000.0) == {"user:alice"}
    assert casbin_readers(rules, links, "a.b", 1000.0, ["user:alice"]) == {"user:alice"}


def test_cycles_terminate_and_still_grant() -> None:
    links = [
        ("user:alice", "group:a"),
        ("group:a", "group:b"),
        ("group:b", "group:a"),
        ("group:b", "group:b"),
        ("group:b", "group:c"),
        ("service:bot", "group:b"),
    ]
    rules = [allow("group:c", "a.*", rule_id="1"), deny("group:a", "a.secret", rule_id="2")]
    analyser = ExposureAnalyser(rules, links)
    assert analyser.directory.members("group:a") == {"user:alice", "service:bot"}
    assert analyser.effective("a.b", "read", 0.0) == {"user:alice", "service:bot"}
    assert analyser.effective("a.secret", "read", 0.0) == frozenset()
    for dataset in ["a.b", "a.secret"]:
        assert analyser.effective(dataset, "read", 0.0) == casbin_readers(
            rules, links, dataset, 0.0, analyser.universe
        )


def test_direct_subjects_unknown_principals_and_empty_groups() -> None:
    rules = [
        allow("user:ghost", "a.b", rule_id="ghost"),  # a user nobody put in any group
        allow("group:empty", "a.b", rule_id="empty"),  # a group without members
        allow("group:unlinked", "a.b", rule_id="unlinked", act="read"),
    ]
    analyser = ExposureAnalyser(rules, [], extra_principals=["service:trainer"])
    assert analyser.universe == {"user:ghost", "service:trainer"}
    assert analyser.effective("a.b", "read", 0.0) == {"user:ghost"}
    assert analyser.grant_excess("a.b", "read", 0.0, frozenset({"service:trainer"})) == {
        "ghost": {"user:ghost"},
        "empty": frozenset(),
        "unlinked": frozenset(),
    }
    assert analyser.paths_for("user:nobody", "a.b", "read", 0.0) == []
    # Intended audiences may name leaves nobody has heard of: they just expand to themselves.
    assert analyser.intended(["user:newcomer", "group:unknown"]) == {"user:newcomer"}
    assert "user:newcomer" in analyser.universe


def test_membership_change_reports_datasets_of_the_group_and_its_ancestors() -> None:
    links = chain("user:alice", "group:team", "group:dept", "group:all")
    rules = [
        allow("group:all", "x.*", rule_id="1"),
        allow("group:dept", "y.a", rule_id="2"),
        allow("group:team", "z.a", rule_id="3"),
        deny("group:other", "w.a", rule_id="4"),
    ]
    datasets = ["x.a", "x.b", "y.a", "y.b", "z.a", "w.a"]
    analyser = ExposureAnalyser(rules, links)
    assert analyser.rules_affected_by_membership("group:dept") == [rules[1], rules[0]]
    assert analyser.datasets_affected_by_membership("group:dept", datasets) == ["x.a", "x.b", "y.a"]
    assert analyser.datasets_affected_by_membership("group:team", datasets) == [
        "x.a",
        "x.b",
        "y.a",
        "z.a",
    ]
    assert analyser.datasets_affected_by_membership("group:nowhere", datasets) == []

    assert analyser.add_link("user:bob", "group:team")
    assert analyser.effective("y.a", "read", 0.0) == {"user:alice", "user:bob"}
    assert analyser.remove_link("user:alice", "group:team")
    assert not analyser.remove_link("user:alice", "group:team")
    assert analyser.effective("x.a", "read", 0.0) == {"user:bob"}


def test_membership_change_under_a_deny_rechecks_grants_reaching_the_member() -> None:
    links = [
        ("user:alice", "group:all"),
        ("group:contractors", "group:all"),
        ("user:bob", "group:research"),
        ("user:carol", "group:sales"),
    ]
    rules = [
        allow("group:all", "x.*", rule_id="everyone"),
        allow("group:research", "x.*", rule_id="research"),
        allow("group:sales", "x.*", rule_id="sales"),
        deny("group:contractors", "x.a", rule_id="no-contractors"),
    ]
    analyser = ExposureAnalyser(rules, links)
    datasets = ["x.a", "x.b", "y.a"]
    excess_before = analyser.exposure("x.a", "read", 0.0).by_grant["research"]
    assert analyser.directory.names(excess_before) == ["user:bob"]
    original = analyser.copy()

    analyser.add_link("user:bob", "group:contractors")

    plan = analyser.reanalysis_for_membership(original, ["group:contractors"], datasets)
    assert plan.grants == {
        # The deny can take bob out of research's excess too, but not carol out of sales'.
        "x.a": (rules[0], rules[1]),
        "x.b": (rules[0],),  # elsewhere only the grant on the group above changes
    }
    assert plan.affected == ("x.a", "x.b")
    assert analyser.exposure("x.a", "read", 0.0).by_grant["research"] == 0
    bits_of = analyser.directory.bits_of
    assert analyser.grant_excess_bits(rules[:2], "x.b", "read", 0.0) == {
        "everyone": GrantExcess(bits_of(["user:alice", "user:bob"]), 2),
        "research": GrantExcess(bits_of(["user:bob"]), 1),
    }
    assert analyser.grant_excess_bits(rules, "x.a", "read", 0.0, bits_of(["user:carol"])) == {
        "everyone": GrantExcess(bits_of(["user:alice"]), 1),  # bob is denied now
        "research": GrantExcess(0, 0),
        "sales": GrantExcess(0, 0),  # carol is intended
    }
    assert analyser.grant_excess_bits(rules, "y.a", "read", 0.0) == {}  # covers nothing
    # An audience naming the changed group (or a group above it) changes the intended set.
    audiences = {"y.a": ["group:all"], "x.b": ["group:all"]}
    plan = analyser.reanalysis_for_membership(original, ["group:contractors"], datasets, audiences)
    assert plan.grants == {"x.a": (rules[0], rules[1]), "x.b": (rules[0], rules[1])}
    # A member with no leaves changes nothing.
    with_empty = analyser.copy()
    with_empty.add_link("group:empty", "group:all")
    assert with_empty.reanalysis_for_membership(analyser, ["group:all"], datasets).affected == ()
    assert analyser.datasets_affected_by_membership("group:all", datasets) == ["x.a", "x.b"]


def test_rule_change_reanalysis_depends_on_the_effect() -> None:
    datasets = ["x.a", "x.b", "y.a"]
    links = [("user:a", "group:g"), ("user:b", "group:h")]
    grants = [
        allow("group:g", "x.*", rule_id="1"),
        allow("group:h", "x.*", rule_id="2"),
        allow("user:a", "x.a", rule_id="3"),  # a single user: its bit is tested, not a set
    ]
    analyser = ExposureAnalyser(grants, links)
    # An allow: only itself, where it covers.
    assert analyser.reanalysis_for_rule(grants[0], datasets).grants == {
        "x.a": (grants[0],),
        "x.b": (grants[0],),
    }
    # A deny: the allows there that reach someone it denies.
    assert analyser.reanalysis_for_rule(deny("group:g", "x.a"), datasets).grants == {
        "x.a": (grants[2], grants[0])  # exact resources first, then patterns
    }
    assert analyser.reanalysis_for_rule(deny("user:b", "x.*"), datasets).grants == {
        "x.a": (grants[1],),
        "x.b": (grants[1],),
    }
    assert analyser.reanalysis_for_rule(grants[0], datasets, action="write").affected == ()
    odd = Rule(sub="group:g", obj="*", act="read", eft="audit", exp="", id="3")
    assert analyser.reanalysis_for_rule(odd, datasets).affected == ()


def test_copies_share_nothing_they_change() -> None:
    links = [
        ("user:a", "group:x"),
        ("user:b", "group:x"),
        ("group:x", "group:top"),
        ("user:e", "group:other"),
    ]
    rules = [allow("group:top", "d.*", rule_id="1"), allow("user:c", "d.a", rule_id="2")]
    original = ExposureAnalyser(rules, links)
    original.effective("d.a", "read", 0.0)  # memos filled before copying
    copy = original.copy()

    # Both change after the copy, each in its own way, on the same inner sets.
    original.add_link("user:e", "group:x")
    original.remove_rule(rules[1])
    copy.remove_link("user:a", "group:x")
    copy.add_rule(allow("group:top", "d.a", rule_id="3"))
    copy.add_rule(deny("user:b", "d.*", rule_id="4"))

    expected_original = ExposureAnalyser([rules[0]], [*links, ("user:e", "group:x")])
    expected_copy = ExposureAnalyser(
        [*rules, allow("group:top", "d.a", rule_id="3"), deny("user:b", "d.*", rule_id="4")],
        links[1:],
    )
    for analyser, expected in [(original, expected_original), (copy, expected_copy)]:
        for dataset in ["d.a", "d.b"]:
            assert analyser.effective(dataset, "read", 0.0) == expected.effective(
                dataset, "read", 0.0
            )
            assert analyser.rules_covering(dataset, "read") == expected.rules_covering(
                dataset, "read"
            )
        assert analyser.rules_affected_by_membership("group:x") == (
            expected.rules_affected_by_membership("group:x")
        )
    assert original.effective("d.a", "read", 0.0) == {"user:a", "user:b", "user:e"}
    assert copy.effective("d.a", "read", 0.0) == {"user:c"}


def test_a_copy_shares_its_memos_only_until_one_side_changes() -> None:
    links = [("user:a", "group:x"), ("group:x", "group:top"), ("user:b", "group:y")]
    rules = [allow("group:top", "d.*", rule_id="1")]
    original = ExposureAnalyser(rules, links)
    copy = original.copy()
    # Memos filled through the copy while the links are still the same on both sides ...
    assert copy.effective("d.a", "read", 0.0) == {"user:a"}
    assert copy.directory.path("user:a", "group:top") == ("user:a", "group:x", "group:top")
    # ... then the copy moves people and numbers new leaves: the original sees none of it.
    copy.add_link("group:y", "group:x")
    copy.add_rule(allow("user:new", "d.a", rule_id="2"))
    assert copy.effective("d.a", "read", 0.0) == {"user:a", "user:b", "user:new"}
    assert copy.directory.path("user:b", "group:top") == (
        "user:b",
        "group:y",
        "group:x",
        "group:top",
    )
    assert original.effective("d.a", "read", 0.0) == {"user:a"}
    assert original.directory.path("user:b", "group:top") is None
    assert "user:new" not in original.universe
    assert original.rules() == rules
    # The original changes on its own afterwards, from the state it had.
    original.remove_link("user:a", "group:x")
    assert original.effective("d.a", "read", 0.0) == frozenset()
    assert copy.effective("d.a", "read", 0.0) == {"user:a", "user:b", "user:new"}


@pytest.mark.parametrize("stale_limit", [0, 3, 10_000])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(st.sampled_from(USERS + GROUPS[:5]), st.sampled_from(GROUPS[:5]))),
    st.lists(
        st.tuples(
            st.integers(min_value=0),
            st.tuples(st.sampled_from(USERS + GROUPS[:5]), st.sampled_from(GROUPS[:5])),
        ),
        min_size=1,
        max_size=8,
    ),
)
def test_copies_changed_from_any_version_find_the_paths_a_fresh_directory_finds(
    stale_limit: int,
    links: list[tuple[str, str]],
    steps: list[tuple[int, tuple[str, str]]],
) -> None:
    """Forward searches are shared between a directory and its copies: a copy taken from any
    earlier version and changed there (a link added, or removed when present) answers like a
    directory built from its links, and every other version still answers like its own."""
    links = [(m, g) for m, g in dict.fromkeys(links) if m != g]
    versions = [(Directory(links), links)]
    everyone = USERS + GROUPS[:5]
    with module_setting("STALE_SEARCHES", stale_limit):
        for pick, (member, group) in steps:
            base, base_links = versions[pick % len(versions)]
            base.ancestors(member)  # searches filled before the copy
            changed = base.copy()
            if (member, group) in base_links:
                assert changed.remove_link(member, group)
                changed_links = [link for link in base_links if link != (member, group)]
            elif member != group:
                assert changed.add_link(member, group)
                changed_links = [*base_links, (member, group)]
            else:
                continue
            versions.append((changed, changed_links))
            for directory, version_links in versions:
                fresh = Directory(version_links)
                for principal in everyone:
                    assert directory.ancestors(principal) == fresh.ancestors(principal)


def test_rule_changes_and_copies() -> None:
    links = [("user:alice", "group:eng")]
    grant = allow("group:eng", "a.*", rule_id="1")
    analyser = ExposureAnalyser([], links)
    assert analyser.add_rule(grant)
    assert not analyser.add_rule(grant)
    snapshot_before = analyser.copy()
    block = deny("user:alice", "a.b", rule_id="2")
    analyser.add_rule(block)
    assert analyser.effective("a.b", "read", 0.0) == frozenset()
    assert snapshot_before.effective("a.b", "read", 0.0) == {"user:alice"}
    assert analyser.remove_rule(block)
    assert analyser.remove_rule(grant)
    assert analyser.rules() == []
    assert analyser.rules_covering("a.b", "read") == []


def test_rules_without_a_known_effect_are_ignored() -> None:
    odd = Rule(sub="user:a", obj="a.b", act="read", eft="audit", exp="", id="9")
    analyser = ExposureAnalyser([odd], [])
    assert analyser.effective("a.b", "read", 0.0) == frozenset()
    assert casbin_readers([odd], [], "a.b", 0.0, ["user:a"]) == frozenset()
    assert analyser.rules() == [odd]
    assert analyser.remove_rule(odd)


def test_invalid_expiry_is_rejected() -> None:
    with pytest.raises(ValueError, match="rule '7'"):
        ExposureAnalyser([allow("user:a", "a.b", rule_id="7", exp="tomorrow")], [])


def test_bitsets_round_trip_through_names() -> None:
    users = [f"user:u{i}" for i in range(300)]
    links = [(user, "group:all") for user in users]
    directory = Directory(links)
    everyone = directory.leaf_bits("group:all")
    assert everyone.bit_count() == 300
    assert sorted(directory.names(everyone)) == sorted(users)
    assert directory.bits_of([*users[:3], "group:all", "user:unknown"]).bit_count() == 3
    assert directory.sample(everyone, 5) == directory.names(everyone)[:5]
    assert directory.sample(0, 5) == []
    assert directory.names(0) == []


@pytest.mark.parametrize("spread", [1, 7, 97, 5003])
def test_samples_and_names_of_sparse_and_dense_bitsets(spread: int) -> None:
    leaves = [f"user:u{i}" for i in range(40_000)]
    directory = Directory(extra_principals=leaves)
    chosen = leaves[3::spread]
    bits = directory.bits_of(chosen)
    assert directory.names(bits) == chosen
    for limit in [1, 3, 10, 200]:
        assert directory.sample(bits, limit) == chosen[:limit]
