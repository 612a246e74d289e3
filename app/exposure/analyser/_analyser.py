"""`ExposureAnalyser`: effective readers, intended audience and per-grant excess of datasets,
Casbin-exact, and which grants one change can alter (see the package docstring)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from types import MappingProxyType

from app.exposure.analyser._bits import bit_test, from_indices
from app.exposure.analyser._cow import Nested
from app.exposure.analyser._directory import Directory, Path
from app.exposure.analyser._results import Exposure, GrantExcess, Within
from app.exposure.analyser._rules import ActionRules, Catalog, Grant, Reanalysis, covers
from app.policy.casbin_model import ALLOW, ANY_PURPOSE, DENY, Rule, parse_expiry


class _Blocking:
    """The leaves kept out of the excess of an allow for each purpose on one dataset: the
    intended ones and those a live deny for that purpose reaches (a deny for any purpose,
    or one for the allow's own purpose; an allow for any purpose is kept out only by denies for
    any purpose, since it still lets a denied leaf in for every other purpose)."""

    def __init__(self, analyser: ExposureAnalyser, denies: list[Rule], intended: int) -> None:
        self._analyser = analyser
        self._intended = intended
        self._by_purpose: dict[str, list[Rule]] = {}
        for rule in denies:
            self._by_purpose.setdefault(rule.purpose, []).append(rule)
        self.denied = {ANY_PURPOSE: analyser._union(self._by_purpose.get(ANY_PURPOSE, ()))}
        self._blocked: dict[str, tuple[int, Callable[[int], bool]]] = {}

    def denied_for(self, purpose: str) -> int:
        found = self.denied.get(purpose)
        if found is None:
            own = self._analyser._union(self._by_purpose.get(purpose, ()))
            found = self.denied[purpose] = self.denied[ANY_PURPOSE] | own
        return found

    def of(self, purpose: str) -> tuple[int, Callable[[int], bool]]:
        found = self._blocked.get(purpose)
        if found is None:
            blocked = self.denied_for(purpose) | self._intended
            found = self._blocked[purpose] = (blocked, bit_test(blocked))
        return found


class ExposureAnalyser:
    """Effective readers, intended audience and per-grant excess of datasets, Casbin-exact."""

    def __init__(
        self,
        rules: Iterable[Rule],
        links: Iterable[tuple[str, str]],
        extra_principals: Iterable[str] = (),
    ) -> None:
        self.directory = Directory(links)
        # action -> its allow rules, and its deny rules (few: looked up on their own).
        self._allows: dict[str, ActionRules] = {}
        self._denies: dict[str, ActionRules] = {}
        self._by_subject: Nested[str, Rule, None] = Nested()
        self._rules: dict[Rule, Grant] = {}
        self._rules_shared = False  # with a copy: the first rule change takes its own tables
        for rule in rules:
            self.add_rule(rule)
        for principal in extra_principals:
            self.directory.register(principal)

    # -- rules ----------------------------------------------------------------------------------

    def add_rule(self, rule: Rule) -> bool:
        """Add a p rule; False when an identical rule was already there (Casbin keeps a set).

        A rule whose effect is neither allow nor deny matches in Casbin but has no effect, so it
        is not indexed (but still counts as present).
        """
        if rule in self._rules:
            return False
        self._own_rules()
        grant = Grant(rule, parse_expiry(rule), rule.eft == ALLOW)
        self._rules[rule] = grant
        self.directory.register(rule.sub)
        if rule.eft in (ALLOW, DENY):
            table = self._allows if grant.is_allow else self._denies
            rules = table.get(rule.act)
            if rules is None:
                rules = table[rule.act] = ActionRules()
            rules.add(grant)
            self._by_subject.put(rule.sub, rule, None)
        return True

    def remove_rule(self, rule: Rule) -> bool:
        """Remove a p rule; False when it was not there."""
        if rule not in self._rules:
            return False
        self._own_rules()
        del self._rules[rule]
        if rule.eft in (ALLOW, DENY):
            table = self._allows if rule.eft == ALLOW else self._denies
            table[rule.act].remove(rule)
            self._by_subject.remove(rule.sub, rule)
        return True

    def rules(self) -> list[Rule]:
        return list(self._rules)

    def rules_covering(self, dataset: str, action: str) -> list[Rule]:
        """Every allow/deny rule for `action` whose resource covers `dataset`, live or not
        (allows first)."""
        return [
            grant.rule
            for table in (self._allows, self._denies)
            for grant in self._covering(table, dataset, action)
        ]

    @staticmethod
    def _covering(table: dict[str, ActionRules], dataset: str, action: str) -> Iterator[Grant]:
        rules = table.get(action)
        return iter(()) if rules is None else rules.covering(dataset)

    def _live(
        self, table: dict[str, ActionRules], dataset: str, action: str, now: float
    ) -> list[Rule]:
        return [g.rule for g in self._covering(table, dataset, action) if g.is_live(now)]

    def _live_denies(self, dataset: str, action: str, now: float, lasting: bool) -> list[Rule]:
        return [
            g.rule
            for g in self._covering(self._denies, dataset, action)
            if g.is_live(now) and not (lasting and g.expiry is not None)
        ]

    def held_datasets(self, is_hold: Callable[[Rule], bool]) -> set[str]:
        """The resources (exact: datasets) of the deny rules that `is_hold` picks, for any
        action."""
        found: set[str] = set()
        for rules in self._denies.values():
            for resource, cell in rules.exact.data.items():
                if resource not in found and any(map(is_hold, cell)):
                    found.add(resource)
        return found

    def has_expiring_deny(self, dataset: str, action: str, now: float) -> bool:
        """Whether a live deny covering `dataset` for `action` has an expiry."""
        return any(
            g.is_live(now) and g.expiry is not None
            for g in self._covering(self._denies, dataset, action)
        )

    # -- memberships ----------------------------------------------------------------------------

    def add_link(self, member: str, group: str) -> bool:
        return self.directory.add_link(member, group)

    def remove_link(self, member: str, group: str) -> bool:
        return self.directory.remove_link(member, group)

    def rules_affected_by_membership(self, group: str) -> list[Rule]:
        """The rules whose reach a change of `group`'s direct members can alter.

        A new or removed link ``(member, group)`` only adds or removes paths through that link,
        so the subjects whose member sets change are `group` and the groups it reaches (within
        Casbin's depth). Valid before and after the change.
        """
        found: list[Rule] = []
        for subject in self.directory.ancestors(group):
            found.extend(self._by_subject.data.get(subject, ()))
        return found

    def datasets_affected_by_membership(
        self,
        group: str,
        dataset_ids: Iterable[str],
        audiences: Mapping[str, Iterable[str]] | None = None,
    ) -> list[str]:
        """Which of `dataset_ids` may change exposure when `group`'s direct members change
        (whichever member): a coarser, member-independent `reanalysis_for_membership`.

        Those covered by a rule of `rules_affected_by_membership`, and, given the datasets'
        intended `audiences` (dataset id -> listed principals), those whose audience lists `group`
        or a group it reaches: their intended expansion changes. Valid before and after the change.
        """
        catalog = Catalog(dataset_ids)
        hit: dict[str, None] = {}
        for resource in {rule.obj for rule in self.rules_affected_by_membership(group)}:
            hit.update(dict.fromkeys(catalog.covered(resource)))
        if audiences:
            reached = self.directory.ancestors(group).keys()
            for dataset in catalog.ids:
                if not reached.isdisjoint(audiences.get(dataset, ())):
                    hit[dataset] = None
        return [d for d in catalog.ids if d in hit]

    def reanalysis_for_membership(
        self,
        before: ExposureAnalyser,
        groups: Iterable[str],
        dataset_ids: Iterable[str],
        audiences: Mapping[str, Iterable[str]] | None = None,
        action: str | None = None,
    ) -> Reanalysis:
        """What changing the direct members of `groups` (any number of links) altered, given
        `before`: this analyser as it was before those changes (the same rules).

        Only subjects whose member set actually differs count (a user joining a second team
        under a division already holding them changes nothing there). Only the groups reaching
        a changed group (within Casbin's depth) can have changed member sets, and only in leaves
        of ``diff``, the union of those differences. So: the allow rules on changed subjects, on
        the datasets they cover; and where a deny on a changed subject covers a dataset or its
        intended audience names one, the allow rules there whose subjects reach a leaf of
        ``diff``.
        """
        catalog = Catalog(dataset_ids)
        candidates: dict[str, None] = {}
        for group in groups:
            candidates.update(dict.fromkeys(before.directory.ancestors(group)))
            candidates.update(dict.fromkeys(self.directory.ancestors(group)))
        changed: set[str] = set()
        diff = 0
        for subject in candidates:
            old, new = before.directory.leaf_bits(subject), self.directory.leaf_bits(subject)
            if old != new:
                changed.add(subject)
                diff |= old ^ new
        grants: dict[str, dict[Rule, None]] = {}
        if not changed:
            return catalog.reanalysis(grants)
        rechecked: set[str] = set()
        for subject in changed:
            for rule in self._by_subject.data.get(subject, ()):
                if action is not None and rule.act != action:
                    continue
                covered = catalog.covered(rule.obj)
                if rule.eft == DENY:
                    rechecked.update(covered)
                else:
                    for dataset in covered:
                        grants.setdefault(dataset, {})[rule] = None
        if audiences:
            for dataset in catalog.ids:
                if not changed.isdisjoint(audiences.get(dataset, ())):
                    rechecked.add(dataset)
        self._add_allows_meeting(diff, rechecked, action, grants)
        return catalog.reanalysis(grants)

    def reanalysis_for_rule(
        self, rule: Rule, dataset_ids: Iterable[str], action: str | None = None
    ) -> Reanalysis:
        """What adding or removing `rule` can alter (the same before and after the change).

        An allow changes only its own excess, on the datasets it covers. A deny changes the
        excess of the allows there whose subjects reach any leaf the deny's subject reaches.
        """
        catalog = Catalog(dataset_ids)
        grants: dict[str, dict[Rule, None]] = {}
        if (action is not None and rule.act != action) or rule.eft not in (ALLOW, DENY):
            return catalog.reanalysis(grants)
        covered = catalog.covered(rule.obj)
        if rule.eft == ALLOW:
            return catalog.reanalysis({dataset: {rule: None} for dataset in covered})
        denied = self.directory.leaf_bits(rule.sub)
        self._add_allows_meeting(denied, covered, rule.act, grants)
        return catalog.reanalysis(grants)

    def reanalysis_for_rules(
        self, rules: Iterable[Rule], dataset_ids: Iterable[str], action: str | None = None
    ) -> dict[str, tuple[Rule, ...]]:
        """`reanalysis_for_rule` of several rules (a grant's, one per purpose), merged: dataset
        id -> the allow rules whose excess may change."""
        ids = list(dataset_ids)
        merged: dict[str, dict[Rule, None]] = {}
        for rule in rules:
            for dataset, found in self.reanalysis_for_rule(rule, ids, action).grants.items():
                merged.setdefault(dataset, {}).update(dict.fromkeys(found))
        if len(merged) < 2:
            return {dataset: tuple(found) for dataset, found in merged.items()}
        return {dataset: tuple(merged[dataset]) for dataset in ids if dataset in merged}

    def _add_allows_meeting(
        self,
        bits: int,
        datasets: Iterable[str],
        action: str | None,
        grants: dict[str, dict[Rule, None]],
    ) -> None:
        """Add to `grants` the allow rules covering `datasets` whose subjects reach a leaf in
        `bits` (live or not: a plan holds at any time)."""
        directory = self.directory
        reached = directory.reached_by(bits)
        is_in = bit_test(bits)
        tables = [rules for act, rules in self._allows.items() if action is None or act == action]
        # A pattern's rule set covers many datasets: look at each set once.
        meeting: dict[int, list[Rule]] = {}
        for dataset in datasets:
            for table in tables:
                for cell in table.cells(dataset):
                    found = meeting.get(id(cell))
                    if found is None:
                        found = meeting[id(cell)] = []
                        for rule in cell:
                            if reached is not None:
                                if rule.sub in reached:
                                    found.append(rule)
                                continue
                            number = directory.plain_leaf_number(rule.sub)
                            if number is not None:
                                if is_in(number):
                                    found.append(rule)
                            elif directory.leaf_bits(rule.sub) & bits:
                                found.append(rule)
                    if found:
                        target = grants.setdefault(dataset, {})
                        for rule in found:
                            target[rule] = None

    # -- analysis -------------------------------------------------------------------------------

    @property
    def universe(self) -> frozenset[str]:
        """Every leaf known: link members and groups, rule subjects and extra principals."""
        return self.directory.leaves()

    def intended_bits(self, audience: Iterable[str]) -> int:
        """The expansion of an intended audience: listed leaves and every leaf reaching a listed
        group (with Casbin's depth limit, for consistency with what grants reach)."""
        bits = 0
        for principal in audience:
            bits |= self.directory.leaf_bits(principal)
        return bits

    def blockers(
        self,
        dataset: str,
        action: str,
        now: float,
        audience: Iterable[str],
        purpose: str = ANY_PURPOSE,
    ) -> frozenset[str]:
        """The principals whose leaves are never in the excess on `dataset` of a grant's rule
        for `purpose`: the subjects of the live denies covering it that deny that purpose (for
        a rule for any purpose: the denies for any purpose), and its intended audience as
        listed."""
        denies = self._live_denies(dataset, action, float(now), lasting=False)
        return frozenset([*(rule.sub for rule in denies if rule.for_purpose(purpose)), *audience])

    def intended(self, audience: Iterable[str]) -> frozenset[str]:
        return frozenset(self.directory.names(self.intended_bits(audience)))

    def exposure(
        self, dataset: str, action: str, now: float, intended: int = 0, lasting: bool = False
    ) -> Exposure:
        """The dataset's effective readers, excess and per-grant excess; `intended` as bits.

        `lasting`: count only the denies that never expire (the worst case over time: a deny
        with an expiry hides exposure only until then)."""
        now = float(now)
        allows = self._live(self._allows, dataset, action, now)
        denies = self._live_denies(dataset, action, now, lasting)
        blocking = _Blocking(self, denies, intended)
        denied = blocking.denied[ANY_PURPOSE]
        directory = self.directory
        parts: list[int] = []
        plain: list[int] = []
        # purpose -> what its allows reach: ORed, as for `parts` and `plain` (any purpose)
        reached_for: dict[str, int] = {}
        by_grant: dict[str, int] = {}
        counts: dict[str, int] = {}
        for rule in allows:
            number = directory.plain_leaf_number(rule.sub)
            if rule.purpose != ANY_PURPOSE:
                bits = directory.leaf_bits(rule.sub) if number is None else 1 << number
                reached_for[rule.purpose] = reached_for.get(rule.purpose, 0) | bits
            elif number is not None:
                plain.append(number)
            else:
                parts.append(directory.leaf_bits(rule.sub))
            blocked, is_blocked = blocking.of(rule.purpose)
            excess, count = self._excess(rule.sub, number, blocked, is_blocked)
            previous = by_grant.get(rule.id)
            if previous is not None:  # two rules with one id: one grant
                excess |= previous
                count = excess.bit_count()
            by_grant[rule.id] = excess
            counts[rule.id] = count
        if plain:
            parts.append(from_indices(plain))
        return Exposure(
            dataset=dataset,
            action=action,
            allow_rules=tuple(allows),
            deny_rules=tuple(denies),
            intended=intended,
            by_grant=MappingProxyType(by_grant),
            excess_counts=MappingProxyType(counts),
            reached_parts=tuple(parts),
            denied=denied,
            purpose_parts=tuple(
                (reached, blocking.denied_for(purpose)) for purpose, reached in reached_for.items()
            ),
        )

    def grant_excess_bits(
        self,
        rules: Iterable[Rule],
        dataset: str,
        action: str,
        now: float,
        intended: int = 0,
        lasting: bool = False,
    ) -> dict[str, GrantExcess]:
        """`exposure(...)`'s `by_grant` and `excess_counts`, for `rules` only (as planned by a
        `Reanalysis`), without looking at the dataset's other allows (`lasting` as there).

        Rule id -> its excess on `dataset`, for those of `rules` that are present, live allows
        for `action` and cover the dataset; the others have no entry, as in `by_grant`.
        """
        now = float(now)
        chosen: list[Rule] = []
        for rule in rules:
            grant = self._rules.get(rule)
            if (
                grant is not None
                and grant.is_allow
                and rule.act == action
                and grant.is_live(now)
                and covers(rule.obj, dataset)
            ):
                chosen.append(rule)
        if not chosen:
            return {}
        blocking = _Blocking(self, self._live_denies(dataset, action, now, lasting), intended)
        found: dict[str, GrantExcess] = {}
        for rule in chosen:
            blocked, is_blocked = blocking.of(rule.purpose)
            number = self.directory.plain_leaf_number(rule.sub)
            excess = GrantExcess(*self._excess(rule.sub, number, blocked, is_blocked))
            previous = found.get(rule.id)
            if previous is not None:  # two rules with one id: one grant
                bits = previous.bits | excess.bits
                excess = GrantExcess(bits, bits.bit_count())
            found[rule.id] = excess
        return found

    def grant_excess_within(
        self,
        before: ExposureAnalyser,
        within: Within,
        rules: Iterable[Rule],
        dataset: str,
        action: str,
        now: float,
        audience: Iterable[str] = (),
        audience_before: Iterable[str] | None = None,
    ) -> dict[str, tuple[int, int]]:
        """For a membership change, where `before` has the same rules and only the leaves of
        `within` changed what they reach: rule id -> (its excess on `dataset` now, and in
        `before`), each restricted to `within` and relative to its base.

        Outside `within` the two excesses are equal, so these small sets say whether a grant's
        excess changed and by how many, without any full-size set operation. Rules as in
        `grant_excess_bits` (present, live, covering allows for `action`); `audience`: the
        dataset's intended audience as listed (`audience_before`: as it was, default the same).
        """
        now = float(now)
        chosen = [
            rule
            for rule in rules
            if (grant := self._rules.get(rule)) is not None
            and grant.is_allow
            and rule.act == action
            and grant.is_live(now)
            and covers(rule.obj, dataset)
        ]
        if not chosen:
            return {}
        listed = list(audience)
        live_denies = self._live(self._denies, dataset, action, now)
        found: dict[str, tuple[int, int]] = {}
        sides = ((self, listed), (before, listed if audience_before is None else audience_before))
        blocked_for: dict[str, list[int]] = {}  # purpose -> each side's blocked moved leaves
        for rule in chosen:
            blocked = blocked_for.get(rule.purpose)
            if blocked is None:
                denies = [d.sub for d in live_denies if d.for_purpose(rule.purpose)]
                blocked = blocked_for[rule.purpose] = [
                    self._within(side.directory, denies + list(names), within, n)
                    for n, (side, names) in enumerate(sides)
                ]
            now_in = within.of(self.directory, rule.sub, 0) & ~blocked[0]
            then_in = within.of(before.directory, rule.sub, 1) & ~blocked[1]
            previous = found.get(rule.id)
            if previous is not None:  # two rules with one id: one grant
                now_in, then_in = now_in | previous[0], then_in | previous[1]
            found[rule.id] = (now_in, then_in)
        return found

    @staticmethod
    def _within(directory: Directory, subjects: Iterable[str], within: Within, side: int) -> int:
        """The moved leaves that reach any of `subjects` (on one side of the change)."""
        reach = within.reach(directory, side)
        if reach is not None:  # only the subjects a moved leaf reaches can contribute
            subjects = reach.intersection(subjects)
        bits = 0
        for subject in subjects:
            bits |= within.of(directory, subject, side)
        return bits

    def _excess(
        self, subject: str, number: int | None, blocked: int, is_blocked: Callable[[int], bool]
    ) -> tuple[int, int]:
        """(leaves reaching `subject` outside `blocked`, how many): without full-size ints for
        a single leaf (most subjects), with a memoised count for a group."""
        if number is not None:
            count = 0 if is_blocked(number) else 1
            return count << number, count
        bits = self.directory.leaf_bits(subject)
        overlap = bits & blocked  # cheap: as long as the shorter operand
        if not overlap:
            return bits, self.directory.leaf_count(subject)
        # bits - blocked, with non-negative ints only
        return bits ^ overlap, self.directory.leaf_count(subject) - overlap.bit_count()

    def _union(self, rules: Iterable[Rule]) -> int:
        bits = 0
        for rule in rules:
            bits |= self.directory.leaf_bits(rule.sub)
        return bits

    def effective(self, dataset: str, action: str, now: float) -> frozenset[str]:
        """Every user and service that Casbin lets do `action` on `dataset` at `now`."""
        return frozenset(self.directory.names(self.exposure(dataset, action, now).effective))

    def grant_excess(
        self, dataset: str, action: str, now: float, intended: frozenset[str]
    ) -> dict[str, frozenset[str]]:
        """Live allow rule id -> the principals outside `intended` (already expanded) that it
        lets in; every live covering allow is a key, with an empty set when it lets none in."""
        exposure = self.exposure(dataset, action, now, self.directory.bits_of(intended))
        names = self.directory.names
        return {rule_id: frozenset(names(bits)) for rule_id, bits in exposure.by_grant.items()}

    def paths_for(
        self, principal: str, dataset: str, action: str, now: float
    ) -> list[tuple[Rule, Path]]:
        """The live allow rules covering `dataset` that `principal` reaches, each with a shortest
        membership path from `principal` to the rule's subject. Denies are not consulted: ask
        `effective` (or `exposure`) whether the principal is let in."""
        now = float(now)
        ancestors = self.directory.ancestors(principal)
        found: list[tuple[Rule, Path]] = []
        for rule in self._live(self._allows, dataset, action, now):
            path = ancestors.get(rule.sub)
            if path is not None:
                found.append((rule, path))
        return found

    def reach(
        self,
        dataset: str,
        action: str,
        now: float,
        principals: Iterable[str] | None = None,
    ) -> dict[str, list[tuple[Rule, Path]]]:
        """Effective principal -> the live allows that reach it, with paths.

        Only for `principals` (those of them that are effective) when given: the full map of a
        dataset readable by 100k principals is large.
        """
        effective = self.exposure(dataset, action, now).effective
        if principals is None:
            chosen = self.directory.names(effective)
        else:
            chosen = self.directory.names(effective & self.directory.bits_of(principals))
        return {p: self.paths_for(p, dataset, action, now) for p in chosen}

    def copy(self) -> ExposureAnalyser:
        """An independent copy to change while readers keep using this one, in constant time:
        rules and directory are shared until either side changes them (copy-on-write)."""
        clone = ExposureAnalyser.__new__(ExposureAnalyser)
        clone.__dict__.update(self.__dict__)
        clone.directory = self.directory.copy()
        clone._rules_shared = self._rules_shared = True
        return clone

    def _own_rules(self) -> None:
        """Before this side's rules change: its own rule tables (linear in the number of rules;
        inner rule sets stay shared until written)."""
        if not self._rules_shared:
            return
        self._allows = {action: rules.copy() for action, rules in self._allows.items()}
        self._denies = {action: rules.copy() for action, rules in self._denies.items()}
        self._by_subject = self._by_subject.copy()
        self._rules = dict(self._rules)
        self._rules_shared = False
