"""The live policy in Casbin's CSV policy format: what any Casbin implementation loads with
`policies/model.conf` to decide exactly as `/v1/check` does for every registered dataset
(`/v1/check` denies an unregistered one, `unknown_dataset`, before the policy is asked: a
`*` or `prefix.*` allow in Casbin would match it).

One `p` line per rule (grants allow and deny, one line per purpose of the grant, with their
expiry; each hold a deny line per action it holds back, for any purpose `*`, its id negated) and
one `g` line per membership. A check that names no purpose is Casbin's request with the purpose
"" (only rules for any purpose `*` match it); on a dataset that requires a purpose `/v1/check`
denies it (`purpose_required`) before the policy is asked. Lines starting with `#` are
comments to Casbin's loaders.
"""

from collections.abc import Iterable, Iterator

from app.policy.casbin_model import Rule

HEADER = """\
# aclaudit policy, version {version}: load with policies/model.conf.
# The model's isLive(p.exp, r.now) is a function to register with the enforcer: true when exp
# is empty or r.now (unix seconds) is before it; enforce (sub, obj, act, purpose, now), with
# purpose "" for a check that names none.
# Ask only about registered datasets (GET /v1/datasets): aclaudit denies any other
# (unknown_dataset) before its policy is asked, which the model does not say; so it does a check
# without a purpose on a dataset whose purpose_required is true (purpose_required).
"""


def casbin_lines(rules: Iterable[Rule], links: Iterable[tuple[str, str]]) -> Iterator[str]:
    """`p, sub, obj, act, purpose, eft, exp, id` and `g, member, group`, in a stable order.
    Identifiers and purposes never contain commas or quotes (app.identifiers), so no field
    needs quoting."""
    for rule in sorted(rules, key=lambda r: (r.sub, r.obj, r.act, r.purpose, r.eft, r.exp, r.id)):
        yield "p, " + ", ".join(rule.as_casbin())
    for member, group in sorted(set(links)):
        yield f"g, {member}, {group}"


def render(version: int, rules: Iterable[Rule], links: Iterable[tuple[str, str]]) -> str:
    return HEADER.format(version=version) + "".join(
        line + "\n" for line in casbin_lines(rules, links)
    )
