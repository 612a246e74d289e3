"""aclaudit's Casbin model (`policies/model.conf`, shipped in the package as
`app/policy/model.conf`): the rule type, the model's functions, its hierarchy limit, the check
that the model file is the one the decision index implements, and a plain pycasbin enforcer over
the same rules, the reference that the decision index and the exposure analyser are proven equal
to (see `app.policy.decision_index` for the model's quirks)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import casbin
from casbin.model import Model

from app.directory.limits import CASBIN_MAX_HIERARCHY_LEVEL, MAX_LINKS

__all__ = [
    "ALLOW",
    "ANY_PURPOSE",
    "CASBIN_MAX_HIERARCHY_LEVEL",
    "DENY",
    "MAX_LINKS",
    "MODEL_PATH",
    "READ_ACTIONS",
    "ModelMismatch",
    "Rule",
    "casbin_enforcer",
    "is_live",
    "key_match",
    "model_differences",
    "parse_expiry",
    "require_model",
]

MODEL_PATH = Path(__file__).resolve().with_name("model.conf")

# The model the decision index, the analyser and explain implement, section by section as
# pycasbin reads it: a model file that says anything else would be a truth nothing enforces.
IMPLEMENTED: dict[tuple[str, str], str] = {
    ("r", "r"): "sub, obj, act, purpose, now",
    ("p", "p"): "sub, obj, act, purpose, eft, exp, id",
    ("g", "g"): "_, _",
    ("e", "e"): "some(where (p_eft == allow)) && !some(where (p_eft == deny))",
    ("m", "m"): (
        "g(r_sub, p_sub) && keyMatch(r_obj, p_obj) && r_act == p_act"
        ' && (p_purpose == "*" || r_purpose == p_purpose) && isLive(p_exp, r_now)'
    ),
}
_SECTION_NAMES = {
    "r": "request_definition",
    "p": "policy_definition",
    "g": "role_definition",
    "e": "policy_effect",
    "m": "matchers",
}


class ModelMismatch(RuntimeError):
    """The Casbin model file is not the model this service implements."""


def model_differences(path: Path) -> list[str]:
    """How the model at `path` differs from the one implemented, one line per difference
    (empty: it is that model), as pycasbin reads it: comments, and spacing where Casbin
    ignores it, do not count."""
    model = Model()
    try:
        model.load_model(str(path))
    except Exception as exc:  # pycasbin raises bare Exceptions and RuntimeErrors for bad files
        return [f"pycasbin cannot load it: {exc}"]
    found = {
        (section, key): assertion.value
        for section, assertions in model.model.items()
        for key, assertion in assertions.items()
    }
    differences = []
    for (section, key), wanted in IMPLEMENTED.items():
        where = f"[{_SECTION_NAMES[section]}] {key}"
        if (section, key) not in found:
            differences.append(f"{where} is missing (expected `{key} = {wanted}`)")
        elif _canonical(section, found[section, key]) != _canonical(section, wanted):
            got = found[section, key]
            differences.append(f"{where} is `{got}`, but the service implements `{wanted}`")
    for section, key in sorted(found.keys() - IMPLEMENTED.keys()):
        differences.append(
            f"[{_SECTION_NAMES.get(section, section)}] {key} is not part of the implemented model"
        )
    return differences


def _canonical(section: str, value: str) -> str:
    """What counts in a section's value: the fields of a definition (spacing aside); a
    matcher without its spaces (they separate no tokens there); an effect exactly, since
    Casbin's effectors recognise only its exact text."""
    if section in ("r", "p", "g"):
        return ",".join(field.strip() for field in value.split(","))
    if section == "m":
        return "".join(value.split())
    return value


def require_model(path: Path) -> None:
    """Raise `ModelMismatch`, naming every difference, unless `path` is the implemented model."""
    differences = model_differences(path)
    if differences:
        raise ModelMismatch(
            f"the Casbin model {path} is not the model aclaudit enforces: "
            + "; ".join(differences)
            + ". Restore it (git checkout policies/model.conf) or unset ACLAUDIT_CASBIN_MODEL; "
            "a different model needs the decision index and the analyser changed with it"
        )


ALLOW = "allow"
DENY = "deny"
ANY_PURPOSE = "*"  # a rule's purpose that matches every request's purpose (and none given)
# Reading these actions from outside a dataset's audience is an exposure.
READ_ACTIONS = frozenset({"read", "export"})


def is_live(exp: str, now: float) -> bool:
    """The model's `isLive(p.exp, r.now)`: no expiry, or `now` strictly before it."""
    return exp == "" or float(now) < float(exp)


def key_match(key: str, pattern: str) -> bool:
    """Casbin's `keyMatch(r.obj, p.obj)` (a copy of `casbin.util.key_match`)."""
    star = pattern.find("*")
    if star == -1:
        return key == pattern
    if len(key) > star:
        return key[:star] == pattern[:star]
    return key == pattern[:star]


@dataclass(frozen=True)
class Rule:
    """One Casbin p rule: a grant, for one of its purposes (a grant with several purposes is
    one rule per purpose, sharing its id). Hashed once (rules key many dicts and sets).

    `purpose` is last among the fields (with its default, any purpose) so that a rule reads
    as before where purposes do not matter; `as_casbin` gives the model's field order."""

    sub: str
    obj: str
    act: str
    eft: str  # "allow" | "deny"
    exp: str  # "" or unix seconds as a string
    id: str
    purpose: str = ANY_PURPOSE  # one purpose, or "*": any
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        fields = (self.sub, self.obj, self.act, self.eft, self.exp, self.id, self.purpose)
        object.__setattr__(self, "_hash", hash(fields))

    def __hash__(self) -> int:
        return self._hash

    def as_casbin(self) -> list[str]:
        """The rule as the model's ``p = sub, obj, act, purpose, eft, exp, id``."""
        return [self.sub, self.obj, self.act, self.purpose, self.eft, self.exp, self.id]

    def for_purpose(self, purpose: str) -> bool:
        """The model's ``p.purpose == "*" || r.purpose == p.purpose``."""
        return self.purpose == ANY_PURPOSE or self.purpose == purpose


def parse_expiry(rule: Rule) -> float | None:
    """A rule's expiry as a number (None: never expires), refused where `is_live` would fail."""
    if rule.exp == "":
        return None
    try:
        return float(rule.exp)
    except ValueError:
        raise ValueError(
            f"rule {rule.id!r}: expiry {rule.exp!r} is neither empty nor a number "
            "(Casbin's isLive would fail on it)"
        ) from None


def ancestor_paths(
    parents: Mapping[str, Iterable[str]], sub: str, links: int
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Every group `sub` reaches in at most `links` links, each with its shortest path from
    `sub` (`sub` itself first): breadth-first, like Casbin's RoleManager._has_link."""
    paths: dict[str, tuple[str, ...]] = {sub: (sub,)}
    frontier = [sub]
    for _level in range(links):
        next_frontier: list[str] = []
        for member in frontier:
            for group in parents.get(member, ()):
                if group not in paths:
                    paths[group] = (*paths[member], group)
                    next_frontier.append(group)
        if not next_frontier:
            break
        frontier = next_frontier
    return tuple(paths.items())


def casbin_enforcer(rules: Iterable[Rule], links: Iterable[tuple[str, str]]) -> casbin.Enforcer:
    """A plain pycasbin Enforcer over the same rules and links: the reference for the index."""
    enforcer = casbin.Enforcer(str(MODEL_PATH))
    enforcer.add_function("isLive", is_live)
    policies = list(dict.fromkeys(tuple(rule.as_casbin()) for rule in rules))
    if policies:
        enforcer.add_policies([list(p) for p in policies])
    groupings = list(dict.fromkeys((member, group) for member, group in links))
    if groupings:
        enforcer.add_grouping_policies([list(g) for g in groupings])
    return enforcer
