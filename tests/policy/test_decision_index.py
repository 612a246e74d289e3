"""DecisionIndex must give exactly pycasbin's decisions for policies/model.conf."""

import asyncio
import itertools
import math
from collections.abc import Sequence

import pytest
from casbin.rbac.default_role_manager.role_manager import RoleManager
from casbin.util import key_match as casbin_key_match
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.policy import decision_index
from app.policy.decision_index import (
    CASBIN_MAX_HIERARCHY_LEVEL,
    Decision,
    DecisionIndex,
    Rule,
    casbin_enforcer,
    is_live,
    key_match,
)
from app.policy.holds import EVERYTHING, hold_rules

USERS = [f"user:u{i}" for i in range(6)]
SERVICES = [f"service:s{i}" for i in range(2)]
GROUPS = [f"group:g{i}" for i in range(11)]  # 11: enough for a chain past the depth limit
UNKNOWN = ["user:nobody"]
PRINCIPALS = USERS + SERVICES + GROUPS
REQUEST_PRINCIPALS = PRINCIPALS + UNKNOWN
# Valid dataset ids plus two odd ones ("a." and "ab") that only raw keyMatch prefixes reach.
DATASETS = ["a", "a.b", "a.b.c", "a.bc", "b.x", "a.", "ab"]
ACTIONS = ["read", "write", "export"]
RESOURCES = [
    *["a", "a.b", "a.b.c", "a.bc", "b.x"],  # exact dataset ids
    *["a.*", "a.b.*", "b.*", "a.b.c.*", "*"],  # prefix patterns and everything
    *["a*", "a.b*", "a.*.c", "a.", ""],  # odd patterns: keyMatch is a raw string prefix
]
# Requests are asked at every one of NOWS, in a drawn order (so memoised outcomes are reused
# forwards and backwards in time); expiries straddle them, including exp == now (expired:
# now < exp is false), and two instants Casbin can be asked at that are not finite.
# Purposes rules name ("*": any), and those requests ask for ("": none; "x": one no rule names).
RULE_PURPOSES = ["*", "*", "*", "train", "audit"]
REQUEST_PURPOSES = ["", "*", "train", "audit", "x"]
NOWS = [999.0, 1000.0, 1500.0, 2000.0, math.inf, math.nan]
EXPIRIES = ["", "", "", "500.0", "1000.0", "1000.5", "2000", "1e3", "inf", "nan"]


# -- helpers ----------------------------------------------------------------------------------


def chain(*principals: str) -> list[tuple[str, str]]:
    return list(itertools.pairwise(principals))


def allow(
    sub: str, obj: str, act: str = "read", exp: str = "", rule_id: str = "1", purpose: str = "*"
) -> Rule:
    return Rule(sub=sub, obj=obj, act=act, eft="allow", exp=exp, id=rule_id, purpose=purpose)


def deny(
    sub: str, obj: str, act: str = "read", exp: str = "", rule_id: str = "2", purpose: str = "*"
) -> Rule:
    return Rule(sub=sub, obj=obj, act=act, eft="deny", exp=exp, id=rule_id, purpose=purpose)


def assert_agrees(
    rules: Sequence[Rule],
    links: Sequence[tuple[str, str]],
    requests: Sequence[tuple[str, str, str, str, float]],
) -> None:
    """Compare every request with pycasbin, and check matched / via / rules_for / expired_allow
    / allow_for_other_purpose."""
    index = DecisionIndex(rules, links)
    enforcer = casbin_enforcer(rules, links)
    role_manager = enforcer.get_role_manager()
    link_set = set(links)
    # g(r.sub, p.sub) for every pair, from pycasbin's own role manager.
    reaches = {
        (sub, rule.sub): role_manager.has_link(sub, rule.sub)
        for sub in {request[0] for request in requests}
        for rule in rules
    }
    for sub, obj, act, purpose, now in requests:
        expected = enforcer.enforce(sub, obj, act, purpose, now)
        decision = index.decide(sub, obj, act, purpose, now)
        request = (sub, obj, act, purpose, now)
        assert decision.allowed == expected, (request, decision)

        # Brute force over the rules, with pycasbin's role manager and keyMatch.
        whatever_purpose = [
            rule
            for rule in rules
            if reaches[sub, rule.sub] and casbin_key_match(obj, rule.obj) and act == rule.act
        ]
        matching = [rule for rule in whatever_purpose if rule.for_purpose(purpose)]
        live = [rule for rule in matching if is_live(rule.exp, now)]

        if decision.matched is None:
            assert decision.via == ()
            assert not live, (request, live)
        else:
            assert decision.matched in live, (request, decision)
            assert decision.matched.eft == ("allow" if decision.allowed else "deny")
            assert_via(decision.via, sub, decision.matched.sub, link_set)

        expired = index.expired_allow(sub, obj, act, purpose, now)
        expired_allows = [r for r in matching if r.eft == "allow" and r not in live]
        if expired_allows:
            assert expired in expired_allows, request
        else:
            assert expired is None, request

        other = index.allow_for_other_purpose(sub, obj, act, now)
        others = [
            r
            for r in whatever_purpose
            if r.eft == "allow" and r.purpose != "*" and is_live(r.exp, now)
        ]
        if others and now < math.inf:
            assert other in others, request
        elif not others:
            assert other is None, request

        explained = index.rules_for(sub, obj, act, purpose, now)
        assert sorted(rule.id for rule, _via in explained) == sorted(rule.id for rule in live)
        for rule, via in explained:
            assert_via(via, sub, rule.sub, link_set)


def assert_via(via: tuple[str, ...], sub: str, target: str, link_set: set[tuple[str, str]]) -> None:
    assert via[0] == sub
    assert via[-1] == target
    assert len(via) <= CASBIN_MAX_HIERARCHY_LEVEL
    assert len(set(via)) == len(via)  # a shortest path never repeats a principal
    for member, group in itertools.pairwise(via):
        assert (member, group) in link_set


def every_request(
    now: float, actions: Sequence[str] = ACTIONS, purposes: Sequence[str] = ("",)
) -> list[tuple[str, str, str, str, float]]:
    return [
        (sub, obj, act, purpose, now)
        for sub in REQUEST_PRINCIPALS
        for obj in DATASETS
        for act in actions
        for purpose in purposes
    ]


# -- property test against pycasbin ------------------------------------------------------------

Policy = tuple[list[Rule], list[tuple[str, str]], str, list[float]]


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    """Random memberships and rules, the action to ask about and the times to ask at."""
    links: list[tuple[str, str]] = []
    # Memberships of users and services.
    for member in USERS + SERVICES:
        for group in draw(st.lists(st.sampled_from(GROUPS), max_size=2, unique=True)):
            links.append((member, group))
    # Often a deep chain from a user through distinct groups: 8 to 11 links, so that groups
    # just inside (9 links), at (10) and past Casbin's depth limit occur.
    if draw(st.integers(min_value=0, max_value=2)):
        length = draw(st.integers(min_value=8, max_value=len(GROUPS)))
        order = draw(st.permutations(GROUPS))
        start = draw(st.sampled_from(USERS))
        links.extend(chain(start, *order[:length]))
    # Random nesting between groups: cycles and self-links included.
    links.extend(
        draw(st.lists(st.tuples(st.sampled_from(GROUPS), st.sampled_from(GROUPS)), max_size=8))
    )
    links = list(dict.fromkeys(links))

    # One action is asked about per example (all three occur across examples); rules use all
    # three, biased towards the asked one so that most rules are in play.
    action = draw(st.sampled_from(ACTIONS))
    count = draw(st.integers(min_value=0, max_value=12))
    rules = [
        Rule(
            sub=draw(st.sampled_from(PRINCIPALS)),
            obj=draw(st.sampled_from(RESOURCES)),
            act=draw(st.sampled_from([action, action, *ACTIONS])),
            eft=draw(st.sampled_from(["allow", "allow", "deny"])),
            exp=draw(st.sampled_from(EXPIRIES)),
            id=str(i),
            purpose=draw(st.sampled_from(RULE_PURPOSES)),
        )
        for i in range(count)
    ]
    # Holds: the automatic denies of a leaf on a dataset, or of an inactive user on `*`.
    held = st.tuples(st.sampled_from(USERS + SERVICES), st.sampled_from([*DATASETS, EVERYTHING]))
    for n, (sub, obj) in enumerate(draw(st.lists(held, max_size=2, unique=True)), start=1):
        rules.extend(hold_rules(n, sub, obj))
    nows = draw(st.permutations(NOWS))
    return rules, links, action, nows


def asked(action: str, nows: Sequence[float]) -> list[tuple[str, str, str, str, float]]:
    """Every request of the drawn action, at every instant, for every purpose."""
    return [r for now in nows for r in every_request(now, [action], REQUEST_PURPOSES)]


# Every principal (users, services, groups and an unknown one) x every dataset, for the drawn
# action, for every purpose, at every instant: 20 x 7 x 5 x 6 = 4200 comparisons with pycasbin
# per example.
# Also with a group memo of 2 entries, so that it is cleared and refilled within an example.
@pytest.mark.parametrize("memo_limit", [2, decision_index.GROUP_MEMO_LIMIT])
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(policies())
def test_index_agrees_with_casbin_on_random_policies(memo_limit: int, policy: Policy) -> None:
    rules, links, action, nows = policy
    saved = decision_index.GROUP_MEMO_LIMIT
    decision_index.GROUP_MEMO_LIMIT = memo_limit
    try:
        assert_agrees(rules, links, asked(action, nows))
    finally:
        decision_index.GROUP_MEMO_LIMIT = saved


def every_path(sub: str, target: str, links: list[tuple[str, str]]) -> set[tuple[str, ...]]:
    """By brute force: every path of at most 9 links and no repeated principal."""
    found: set[tuple[str, ...]] = {(sub,)} if sub == target else set()
    partial: list[tuple[str, ...]] = [(sub,)]
    while partial:
        path = partial.pop()
        for member, group in links:
            if member == path[-1] and group not in path:
                longer = (*path, group)
                if group == target:
                    found.add(longer)
                elif len(longer) < CASBIN_MAX_HIERARCHY_LEVEL:
                    partial.append(longer)
    return found


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policies(), st.integers(min_value=1, max_value=4))
def test_paths_are_every_path_g_follows_shortest_first(policy: Policy, limit: int) -> None:
    _rules, links, _action, _nows = policy
    index = DecisionIndex([], links)
    link_set = set(links)
    for sub in REQUEST_PRINCIPALS:
        for target in PRINCIPALS:
            expected = every_path(sub, target, links)
            paths, complete = index.paths(sub, target, limit)
            assert complete == (len(expected) <= limit), (sub, target)
            assert len(paths) == min(limit, len(expected))
            assert set(paths) <= expected
            assert [len(p) for p in paths] == sorted(len(p) for p in expected)[: len(paths)]
            for path in paths:
                assert_via(path, sub, target, link_set)
            # Casbin's g() holds exactly when some path exists.
            assert bool(expected) == (target in index.ancestors(sub))


def rules_for_action(action: str, first_id: int) -> st.SearchStrategy[list[Rule]]:
    """New rules (ids from `first_id` on), biased towards `action` as `policies` draws them."""
    one = st.tuples(
        st.sampled_from(PRINCIPALS),
        st.sampled_from(RESOURCES),
        st.sampled_from([action, action, *ACTIONS]),
        st.sampled_from(["allow", "allow", "deny"]),
        st.sampled_from(EXPIRIES),
        st.sampled_from(RULE_PURPOSES),
    )
    return st.lists(one, max_size=3).map(
        lambda drawn: [
            Rule(sub, obj, act, eft, exp, id=str(first_id + n), purpose=purpose)
            for n, (sub, obj, act, eft, exp, purpose) in enumerate(drawn)
        ]
    )


def answers(index: DecisionIndex, requests: Sequence[tuple[str, str, str, str, float]]) -> list:
    return [
        (
            index.decide(*r),
            index.expired_allow(*r),
            sorted(index.rules_for(*r), key=repr),
            index.allow_for_other_purpose(r[0], r[1], r[2], r[4]),
        )
        for r in requests
    ]


# Random policies changed a few rules and links at a time (removals and additions, cycles and
# self-links included, the memos of the previous index filled first): every change must answer
# as an index built afresh from the resulting rules and links, in the same order, and must
# leave the index it was made from as it was.
@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(policies(), st.data())
def test_an_index_changed_a_few_rules_and_links_at_a_time_answers_as_one_built_afresh(
    policy: Policy, data: st.DataObject
) -> None:
    rules, links, action, nows = policy
    requests = asked(action, nows)
    rules, links = list(rules), list(links)
    index = DecisionIndex(rules, links)
    before = answers(index, requests)  # fills the memos that a change must not reuse wrongly
    new_link = st.tuples(st.sampled_from(USERS + SERVICES + GROUPS), st.sampled_from(GROUPS))
    for step in range(data.draw(st.integers(min_value=1, max_value=4))):
        gone = data.draw(st.lists(st.sampled_from(rules), max_size=3)) if rules else []
        added = data.draw(rules_for_action(action, 100 * (step + 1)))
        unlinked = data.draw(st.lists(st.sampled_from(links), max_size=3)) if links else []
        linked = data.draw(st.lists(new_link, max_size=3))
        changed = index  # as `PolicySnapshot.changed` applies them: each kind when present
        if added or gone:
            changed = changed.with_rules(added=added, removed=gone)
        if linked or unlinked:
            changed = changed.with_links(added=linked, removed=unlinked)
        rules = [rule for rule in rules if rule not in set(gone)] + added
        links = list(dict.fromkeys([link for link in links if link not in unlinked] + linked))
        after = answers(changed, requests)
        assert after == answers(DecisionIndex(rules, links), requests)
        assert answers(index, requests) == before  # the original is untouched
        index, before = changed, after


# -- scenarios ---------------------------------------------------------------------------------


def test_a_groups_part_of_the_search_is_kept_per_action() -> None:
    """Members share their group's part of the search: read, write and export of one dataset
    are still told apart, whichever is asked first."""
    rules = [
        allow("group:eng", "hr.salaries", rule_id="1"),
        deny("group:all", "hr.*", rule_id="2", act="write"),
        allow("group:all", "hr.*", rule_id="3", act="export"),
    ]
    links = chain("user:alice", "group:eng", "group:all") + chain("user:bob", "group:eng")
    index, enforcer = DecisionIndex(rules, links), casbin_enforcer(rules, links)
    for sub in ("user:alice", "user:bob"):
        for act in ("read", "write", "export", "read"):
            decision = index.decide(sub, "hr.salaries", act, "", 1000.0)
            assert decision.allowed == enforcer.enforce(sub, "hr.salaries", act, "", 1000.0)
            assert decision.allowed == (act in ("read", "export")), (sub, act)


def test_deny_on_group_overrides_allow_on_user() -> None:
    rules = [
        allow("user:alice", "hr.salaries", rule_id="1"),
        deny("group:all", "hr.*", rule_id="2"),
    ]
    links = chain("user:alice", "group:eng", "group:all")
    index = DecisionIndex(rules, links)

    decision = index.decide("user:alice", "hr.salaries", "read", "", 1000.0)

    assert decision == Decision(
        allowed=False, matched=rules[1], via=("user:alice", "group:eng", "group:all")
    )
    assert not casbin_enforcer(rules, links).enforce(
        "user:alice", "hr.salaries", "read", "", 1000.0
    )
    assert index.decide("user:alice", "hr.salaries", "write", "", 1000.0).allowed is False
    assert index.decide("user:bob", "hr.salaries", "read", "", 1000.0).matched is None


def test_prefix_pattern_covers_children_not_itself() -> None:
    rules = [allow("user:alice", "employee_activity.*")]
    index = DecisionIndex(rules, [])

    def allowed(obj: str) -> bool:
        return index.decide("user:alice", obj, "read", "", 0.0).allowed

    assert allowed("employee_activity.keystrokes")
    assert allowed("employee_activity.keystrokes.raw")
    assert not allowed("employee_activity")
    assert not allowed("employee_activity_archive.keystrokes")
    assert not allowed("other.employee_activity.keystrokes")
    requests = [
        ("user:alice", obj, "read", "", 0.0)
        for obj in [
            "employee_activity.keystrokes",
            "employee_activity",
            "employee_activity_archive.x",
            "employee_activity.",
        ]
    ]
    assert_agrees(rules, [], requests)


def test_star_covers_everything() -> None:
    rules = [allow("group:sec", "*", act="export")]
    links = [("service:audit", "group:sec")]
    index = DecisionIndex(rules, links)
    for obj in ["a", "a.b.c", "employee_activity.keystrokes"]:
        decision = index.decide("service:audit", obj, "export", "", 0.0)
        assert decision == Decision(True, rules[0], ("service:audit", "group:sec"))
        assert not index.decide("service:audit", obj, "read", "", 0.0).allowed
    assert_agrees(rules, links, every_request(0.0))


def test_odd_patterns_follow_casbin_key_match() -> None:
    # Only the text before the first "*" counts, as a raw string prefix.
    assert key_match("a.bc", "a.b*")
    assert key_match("a.x.y", "a.*.c")
    assert key_match("a.", "a.*")
    assert not key_match("a", "a.*")
    for obj, pattern in itertools.product([*DATASETS, "", "a.b.c.d"], RESOURCES):
        assert key_match(obj, pattern) == casbin_key_match(obj, pattern), (obj, pattern)
    rules = [allow("user:u0", "a.b*", rule_id="1"), deny("user:u0", "a.*.c", rule_id="2")]
    index = DecisionIndex(rules, [])
    assert index.decide("user:u0", "a.bc", "read", "", 0.0).matched == rules[1]
    assert index.decide("user:u0", "ab", "read", "", 0.0).allowed is False
    assert_agrees(rules, [], every_request(0.0))


def test_expired_allow_never_allows() -> None:
    grant = allow("user:alice", "a.b", exp="1000.0")
    index = DecisionIndex([grant], [])

    before = index.decide("user:alice", "a.b", "read", "", 999.5)
    assert before == Decision(True, grant, ("user:alice",))
    assert index.expired_allow("user:alice", "a.b", "read", "", 999.5) is None

    for now in [1000.0, 1000.5, 5000.0]:  # expiry is exclusive: now == exp is already expired
        assert index.decide("user:alice", "a.b", "read", "", now) == Decision(False, None, ())
        assert index.expired_allow("user:alice", "a.b", "read", "", now) == grant
        assert index.rules_for("user:alice", "a.b", "read", "", now) == []
    assert index.expired_allow("user:bob", "a.b", "read", "", 5000.0) is None
    assert_agrees([grant], [], [("user:alice", "a.b", "read", "", t) for t in [999.5, 1000.0, 1e4]])


def test_live_grant_still_allows_alongside_an_expired_one() -> None:
    old = allow("user:alice", "a.b", exp="100", rule_id="1")
    current = allow("user:alice", "a.*", exp="", rule_id="2")
    index = DecisionIndex([old, current], [])
    assert index.decide("user:alice", "a.b", "read", "", 500.0).matched == current
    assert index.expired_allow("user:alice", "a.b", "read", "", 500.0) == old


def test_expired_deny_does_not_deny() -> None:
    rules = [
        allow("user:alice", "a.b", rule_id="1"),
        deny("user:alice", "*", exp="10", rule_id="2"),
    ]
    index = DecisionIndex(rules, [])
    assert index.decide("user:alice", "a.b", "read", "", 5.0).matched == rules[1]
    assert index.decide("user:alice", "a.b", "read", "", 10.0).matched == rules[0]
    assert_agrees(rules, [], [("user:alice", "a.b", "read", "", t) for t in [5.0, 10.0]])


def test_nesting_beyond_casbin_depth_does_not_grant() -> None:
    groups = [f"group:level{i}" for i in range(1, 12)]
    links = chain("user:alice", *groups)  # user:alice is level 1, group:level1 is level 2, ...
    rules = [allow(group, "a.b", rule_id=str(i)) for i, group in enumerate(groups, start=2)]
    requests = [("user:alice", "a.b", "read", "", 0.0)]
    enforcer = casbin_enforcer(rules[:8], links)
    assert enforcer.enforce(*requests[0])  # group:level9: 9 links away, level 10

    # Level 10 (9 links) is the deepest Casbin follows ...
    deepest = DecisionIndex([rules[8]], links)
    decision = deepest.decide("user:alice", "a.b", "read", "", 0.0)
    assert decision.allowed and decision.via == ("user:alice", *groups[:9])
    assert_agrees([rules[8]], links, requests)
    # ... and a grant 10 or more links away does not reach user:alice.
    for too_deep in rules[9:]:
        assert DecisionIndex([too_deep], links).decide(*requests[0]) == Decision(False, None, ())
        assert_agrees([too_deep], links, requests)
    # A shortcut makes the same group near enough again.
    shortcut = [*links, ("user:alice", "group:level10")]
    assert DecisionIndex([rules[9]], shortcut).decide(*requests[0]).via == (
        "user:alice",
        "group:level10",
    )
    assert_agrees([rules[9]], shortcut, requests)


def test_max_hierarchy_level_matches_pycasbin_default() -> None:
    assert RoleManager().max_hierarchy_level == CASBIN_MAX_HIERARCHY_LEVEL


def test_principal_matches_itself_without_any_links() -> None:
    rules = [allow("group:eng", "a.b"), allow("user:ghost", "a.c", rule_id="3")]
    index = DecisionIndex(rules, [])
    assert index.decide("group:eng", "a.b", "read", "", 0.0) == Decision(
        True, rules[0], ("group:eng",)
    )
    assert index.decide("user:ghost", "a.c", "read", "", 0.0).allowed
    assert_agrees(
        rules, [], [("group:eng", "a.b", "read", "", 0.0), ("user:ghost", "a.c", "read", "", 0.0)]
    )


def test_cycles_terminate_and_still_grant() -> None:
    links = [
        ("user:alice", "group:a"),
        ("group:a", "group:b"),
        ("group:b", "group:a"),
        ("group:b", "group:b"),
        ("group:b", "group:c"),
    ]
    rules = [allow("group:c", "a.b")]
    index = DecisionIndex(rules, links)
    assert index.decide("user:alice", "a.b", "read", "", 0.0).via == (
        "user:alice",
        "group:a",
        "group:b",
        "group:c",
    )
    assert set(index.ancestors("group:b")) == {"group:a", "group:b", "group:c"}
    assert_agrees(rules, links, every_request(0.0))


def test_via_is_a_shortest_path() -> None:
    links = [*chain("user:alice", "group:x", "group:y", "group:top"), ("user:alice", "group:top")]
    index = DecisionIndex([allow("group:top", "a.b")], links)
    assert index.decide("user:alice", "a.b", "read", "", 0.0).via == ("user:alice", "group:top")


def test_rules_for_lists_every_live_match_with_its_path() -> None:
    links = chain("user:alice", "group:eng", "group:all")
    rules = [
        allow("user:alice", "a.b", rule_id="1"),
        allow("group:eng", "a.*", rule_id="2"),
        deny("group:all", "*", rule_id="3"),
        allow("group:all", "*", exp="5", rule_id="4"),  # expired
        allow("group:eng", "a.b", act="write", rule_id="5"),  # other action
        allow("user:bob", "a.b", rule_id="6"),  # other principal
    ]
    index = DecisionIndex(rules, links)
    found = index.rules_for("user:alice", "a.b", "read", "", 10.0)
    assert sorted(found, key=lambda item: item[0].id) == [
        (rules[0], ("user:alice",)),
        (rules[1], ("user:alice", "group:eng")),
        (rules[2], ("user:alice", "group:eng", "group:all")),
    ]


def test_duplicate_rules_and_links_are_harmless() -> None:
    rules = [allow("user:a", "a.b"), allow("user:a", "a.b")]
    links = [("user:a", "group:g"), ("user:a", "group:g")]
    index = DecisionIndex(rules, links)
    assert len(index.rules_for("user:a", "a.b", "read", "", 0.0)) == 1
    assert_agrees(rules, links, every_request(0.0))


def test_empty_policy_allows_only_casbins_degenerate_empty_request() -> None:
    # With no p rules pycasbin evaluates the matcher once with every p field "".
    for links in [[], [("user:a", "")]]:
        index = DecisionIndex([], links)
        enforcer = casbin_enforcer([], links)
        requests = [
            ("", "", "", "", 0.0),
            ("user:a", "", "", "", 0.0),
            ("user:a", "a", "read", "", 0.0),
            ("", "", "", "train", 0.0),
        ]
        for request in requests:
            assert index.decide(*request).allowed == enforcer.enforce(*request), (links, request)
    assert DecisionIndex([], []).decide("", "", "", "", 0.0) == Decision(True, None, ())
    assert not DecisionIndex([deny("user:x", "b")], []).decide("", "", "", "", 0.0).allowed


def test_invalid_expiry_is_rejected_when_building() -> None:
    with pytest.raises(ValueError, match="rule '7'"):
        DecisionIndex([allow("user:a", "a.b", exp="tomorrow", rule_id="7")], [])


def test_as_casbin_field_order() -> None:
    rule = Rule(sub="user:a", obj="a.*", act="read", eft="allow", exp="1767225600.0", id="42")
    assert rule.as_casbin() == ["user:a", "a.*", "read", "*", "allow", "1767225600.0", "42"]
    rule = Rule("user:a", "a.*", "read", "deny", "", "7", purpose="model-training")
    assert rule.as_casbin() == ["user:a", "a.*", "read", "model-training", "deny", "", "7"]


def test_a_purpose_is_matched_by_its_own_rules_and_those_for_any_purpose() -> None:
    links = chain("user:alice", "group:research", "group:all")
    rules = [
        allow("group:all", "ea.*", rule_id="1"),  # any purpose
        allow("group:research", "ea.*", rule_id="2", purpose="model-training"),
        deny("user:alice", "ea.keys", rule_id="3", purpose="model-training"),
        allow("user:bob", "ea.keys", rule_id="4", purpose="model-training"),
    ]
    index = DecisionIndex(rules, links)
    assert index.decide("user:alice", "ea.keys", "read", "analytics", 0.0).matched == rules[0]
    assert index.decide("user:alice", "ea.keys", "read", "model-training", 0.0).matched == rules[2]
    assert index.decide("user:alice", "ea.mouse", "read", "model-training", 0.0).allowed
    assert index.decide("user:bob", "ea.keys", "read", "model-training", 0.0).matched == rules[3]
    for purpose in ("", "*", "analytics"):
        assert not index.decide("user:bob", "ea.keys", "read", purpose, 0.0).allowed
    assert index.allow_for_other_purpose("user:bob", "ea.keys", "read", 0.0) == rules[3]
    assert index.purposes("read") == ["model-training"]
    requests = [
        (sub, obj, "read", purpose, 0.0)
        for sub in ("user:alice", "user:bob", "group:research")
        for obj in ("ea.keys", "ea.mouse")
        for purpose in [*REQUEST_PURPOSES, "model-training", "analytics"]
    ]
    assert_agrees(rules, links, requests)


async def test_concurrent_decisions_from_asyncio_threads_agree() -> None:
    links = [*chain("user:u0", *GROUPS), ("user:u1", "group:g3"), ("group:g5", "group:g0")]
    rules = [
        allow("group:g4", "a.*", rule_id="1"),
        deny("group:g2", "a.b.*", rule_id="2"),
        allow("user:u1", "*", act="export", rule_id="3"),
    ]
    requests = every_request(0.0)
    expected = [DecisionIndex(rules, links).decide(*request) for request in requests]
    shared = DecisionIndex(rules, links)  # fresh memo, filled concurrently below

    def run() -> list[Decision]:
        return [shared.decide(*request) for request in requests]

    results = await asyncio.gather(*(asyncio.to_thread(run) for _ in range(8)))
    assert all(result == expected for result in results)
