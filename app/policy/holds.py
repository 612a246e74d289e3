"""Holds as Casbin rules: each active hold is a deny of its principal on its dataset, one rule per
action it holds back (a guard hold: the reading actions, which the guard measures; an inactive
user's hold on `*`: every action), with the hold's id negated as the rule id (grant ids are
positive, so the two never meet)."""

from collections.abc import Iterable

from app.identifiers import Action
from app.policy.casbin_model import DENY, READ_ACTIONS, Rule

EVERYTHING = "*"


EVERY_ACTION = tuple(action.value for action in Action)
READING = tuple(sorted(READ_ACTIONS))  # the actions whose exposure the guard measures


def hold_rules(hold_id: int, principal: str, dataset: str) -> tuple[Rule, ...]:
    actions = EVERY_ACTION if dataset == EVERYTHING else READING
    return tuple(Rule(principal, dataset, action, DENY, "", str(-hold_id)) for action in actions)


def rules_of(holds: Iterable[tuple[int, str, str]]) -> list[Rule]:
    """The rules of (id, principal, dataset) holds."""
    return [rule for hold in holds for rule in hold_rules(*hold)]


def is_hold(rule: Rule) -> bool:
    return rule.id.startswith("-")


def hold_id(rule: Rule) -> int:
    return -int(rule.id)


def inactive(rules: Iterable[Rule]) -> frozenset[str]:
    """The principals that `rules` hold off everything (inactive users)."""
    return frozenset(rule.sub for rule in rules if rule.obj == EVERYTHING and is_hold(rule))


def reason_code(rule: Rule) -> str:
    """Why a hold's rule denies: the user is inactive (a hold on everything), or the guard held
    a membership back."""
    return "principal_inactive" if rule.obj == EVERYTHING else "held_by_guard"
