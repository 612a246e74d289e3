"""The findings diff alone: policy views built in memory, no database."""

from datetime import UTC, datetime, timedelta

from app.exposure.analyser import ExposureAnalyser
from app.exposure.diff import Accepting, FindingDiff, diff, run_through
from app.exposure.measure import Acceptance, StoredFinding
from app.exposure.schemas import FindingStatus
from app.exposure.view import PolicyView
from app.policy.decision_index import Rule
from app.policy.repository import rule_of
from app.policy.state import DatasetFacts

AT = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
LINKS = [
    ("user:a", "group:eng"),
    ("user:b", "group:eng"),
    ("user:c", "group:eng"),
    ("user:r", "group:research"),
]
SALARIES = DatasetFacts("hr.salaries", "restricted", ("group:research",), "block")
RESEARCH = rule_of("group:research", "hr.*", "read", "allow", None, 1)
ENG = rule_of("group:eng", "hr.*", "read", "allow", None, 2)
# as an approved request (`app.approvals`) carries it: only such counts on a block dataset
ACCEPT = Acceptance("alice", "migration week", datetime(2027, 1, 1, tzinfo=UTC), True)
DIRECT = Acceptance("alice", "migration week", datetime(2027, 1, 1, tzinfo=UTC))


def view(rules: list[Rule], facts: DatasetFacts = SALARIES) -> PolicyView:
    analyser = ExposureAnalyser(rules, LINKS, facts.audience)
    return PolicyView(analyser, {facts.id: facts}, {int(r.id): r.sub for r in rules})


def with_rule(before: PolicyView, rule: Rule) -> PolicyView:
    after = before.changed()
    after.analyser.add_rule(rule)
    after.grant_subjects[int(rule.id)] = rule.sub
    return after


def stored(status: str = "open", count: int = 3, grant_id: int = 2) -> StoredFinding:
    sample = ["user:c", "user:b", "user:a"][:count]
    return StoredFinding(7, "hr.salaries", grant_id, count, "high", status, sample)


def changed(before: PolicyView, after: PolicyView, **kwargs: object) -> FindingDiff:
    args: dict = {"accepting": Accepting(), "guarded": True, "at": AT, "stored": {}}
    args.update(kwargs)
    return run_through(diff(before, after, {"hr.salaries": None}, args.pop("stored"), **args))


def test_a_grant_past_the_audience_of_a_block_dataset_is_refused_and_would_open():
    before = view([RESEARCH])
    found = changed(before, with_rule(before, ENG))
    [refused] = found.refused
    assert refused.id is None and refused.key == ("hr.salaries", 2)
    assert refused.measured.excess_count == 3
    assert refused.measured.severity == "high"  # restricted, fewer than ten
    assert sorted(refused.measured.excess_sample) == ["user:a", "user:b", "user:c"]
    assert refused.measured.paths[0]["via"][-1] == "group:eng"
    assert [o.measured for o in found.opened] == [refused.measured]


def test_the_same_grant_accepted_opens_accepted_and_unguarded_opens_open():
    before = view([RESEARCH])
    after = with_rule(before, ENG)
    accepted = changed(before, after, accepting=Accepting(ACCEPT))
    assert not accepted.refused
    assert [o.acceptance for o in accepted.opened] == [ACCEPT]
    unguarded = changed(before, after, guarded=False)
    assert not unguarded.refused and [o.acceptance for o in unguarded.opened] == [None]


def test_an_acceptance_given_directly_does_not_count_on_a_block_dataset():
    before = view([RESEARCH])
    after = with_rule(before, ENG)
    assert [r.key for r in changed(before, after, accepting=Accepting(DIRECT)).refused] == [
        ("hr.salaries", 2)
    ]
    alert_only = DatasetFacts("hr.salaries", "restricted", ("group:research",), "alert")
    before = view([RESEARCH], alert_only)
    found = changed(before, with_rule(before, ENG), accepting=Accepting(DIRECT))
    assert [o.acceptance for o in found.opened] == [DIRECT]


def test_an_acceptance_of_one_grant_covers_that_grant_only():
    before = view([RESEARCH])
    after = with_rule(before, ENG)
    found = changed(before, after, accepting=Accepting(by_grant={3: ACCEPT}))
    assert [r.key for r in found.refused] == [("hr.salaries", 2)]
    found = changed(before, after, accepting=Accepting(by_grant={2: ACCEPT}))
    assert not found.refused and found.opened[0].acceptance == ACCEPT


def test_a_revoked_grant_resolves_its_finding():
    before = view([RESEARCH, ENG])
    after = before.changed()
    after.analyser.remove_rule(ENG)
    row = stored()
    found = changed(before, after, stored={("hr.salaries", 2): row})
    assert found.resolved == (row,) and not found.opened and not found.refused


def test_an_accepted_finding_widened_reopens_or_is_accepted_anew():
    alert_only = DatasetFacts("hr.salaries", "restricted", ("group:research",), "alert")
    before = view([RESEARCH, ENG], alert_only)
    after = before.changed()
    after.analyser.add_link("user:d", "group:eng")
    rows = {("hr.salaries", 2): stored(FindingStatus.accepted.value)}
    [reopened] = changed(before, after, stored=rows).reopened
    assert reopened.status is FindingStatus.open and reopened.measured.excess_count == 4
    found = changed(before, after, stored=rows, accepting=Accepting(ACCEPT))
    [accepted] = found.accepted
    assert accepted.status is FindingStatus.accepted and accepted.acceptance == ACCEPT
    assert not found.reopened and found.updated == 1


def test_an_allow_held_back_by_an_expiring_deny_is_refused_on_a_block_dataset():
    until = datetime.fromtimestamp(AT, UTC) + timedelta(days=1)
    deny = rule_of("group:eng", "hr.salaries", "read", "deny", until, 3)
    before = view([RESEARCH, deny])
    found = changed(before, with_rule(before, ENG))
    assert not found.refused_now and not found.opened  # nobody new reads it today ...
    [later] = found.refused  # ... but everyone in eng does tomorrow
    assert later.key == ("hr.salaries", 2) and later.measured.excess_count == 3
    assert not changed(before, with_rule(before, ENG), accepting=Accepting(ACCEPT)).refused


def test_a_scan_rewrites_only_a_finding_that_differs_from_the_policy():
    before = view([RESEARCH])
    right = changed(before, with_rule(before, ENG), guarded=False).opened[0].measured
    policy = view([RESEARCH, ENG])
    row = StoredFinding(
        7, "hr.salaries", 2, 3, right.severity, "open", right.excess_sample, right.paths
    )
    assert changed(policy, policy, stored={("hr.salaries", 2): row}) == FindingDiff()
    wrong = StoredFinding(7, "hr.salaries", 2, 2, "high", "open", ["user:c", "user:b"], [])
    [rewritten] = changed(policy, policy, stored={("hr.salaries", 2): wrong}).rewritten
    assert rewritten.id == 7 and rewritten.measured == right
