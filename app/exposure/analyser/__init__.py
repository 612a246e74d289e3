"""Who can read a dataset, who was meant to, and which grants let the difference in.

Pure set arithmetic over the membership graph and the grants, exactly as Casbin decides them
(see `app.policy.decision_index` for the model and its quirks), but computed per dataset instead of
per principal: pycasbin's way (one `enforce` per subject) takes minutes for 100k users.

For a dataset ``d`` and an action ``a`` at time ``now``:

* A rule covers ``d`` when ``keyMatch(d, rule.obj)`` and ``rule.act == a``; it counts only when
  live (``is_live(rule.exp, now)``) and its effect is ``allow`` or ``deny``.
* A principal ``p`` reaches a rule subject ``s`` (Casbin's ``g(p, s)``) when ``p == s`` or the
  shortest membership path from ``p`` to ``s`` has at most ``CASBIN_MAX_HIERARCHY_LEVEL - 1`` (9)
  links. Equivalently: ``p`` is within 9 levels of a breadth-first search from ``s`` down the
  member edges. Cycles are harmless (the search is bounded by depth).
* Purposes (the model's ``p.purpose == "*" || r.purpose == p.purpose``): a rule is for one
  purpose or for any (``*``; a grant with several purposes is one rule per purpose). A check for
  purpose ``q`` is decided by the rules for any purpose and those for ``q``. The purposes that
  matter on a dataset are those its covering rules name, and *any other* purpose (which stands
  for every purpose no rule names, and for a check naming none): only there can the decisions
  differ.
* effective = the leaves (``user:``/``service:``) that the enforcer lets do ``a`` on ``d``
  for *some* purpose that matters, ``union over q of {p : enforce(p, d, a, q, now)}``. With
  ``R_*``/``D_*`` the leaves reaching a live covering allow/deny for any purpose and
  ``R_q``/``D_q`` those reaching one for purpose ``q``, that is
  ``(R_* - D_*) | union over q of (R_q - (D_* | D_q))``: a deny for one purpose takes a leaf
  out only for that purpose, and an allow limited to a purpose reaches its leaves only for it.
  intended = leaves reaching any entry of the intended audience; excess = effective - intended.
  `Exposure.by_grant` splits the excess by the allow rule that lets each principal in (a
  principal reached by two allows is under both): a rule for any purpose lets in
  ``L - D_* - intended`` (``L``: the leaves reaching its subject), a rule for ``q``
  ``L - D_* - D_q - intended``; a grant's excess is the union of its rules'.

Sets of leaves are Python ints used as bitsets, indexed by a leaf number that the `Directory`
assigns (in depth-first order from the top groups, so a group's leaves tend to be close together).
A union or difference of 100k-member sets is then a few microseconds of C. Names are materialised
only on request (`Directory.names`, `Directory.sample`).

Both classes are mutable (`add_rule`, `remove_rule`, `add_link`, `remove_link`) so that one change
can be re-analysed in milliseconds; the memos they keep are invalidated precisely. They are not
safe to mutate while another thread reads them: mutate a `copy()` (cheap: link and rule sets are
copied on write) and swap the reference, as with the enforcer. Reads may register a previously
unseen leaf (an intended-audience member nobody grants anything), which only ever adds a bit
number and changes no answer.

Incremental re-analysis: `reanalysis_for_rule` and `reanalysis_for_membership` say, for one
change, which (dataset, allow rule) pairs' excess can differ (every other grant's excess is
unchanged); `grant_excess_bits` recomputes just those. A membership change touches only the
leaves under the moved member, so only grants reaching them need recomputing;
`datasets_affected_by_membership` is the coarser, member-independent answer.
"""

from app.exposure.analyser._analyser import ExposureAnalyser
from app.exposure.analyser._directory import LEAF_PREFIXES, Directory, is_leaf
from app.exposure.analyser._results import Exposure, GrantExcess, Within
from app.exposure.analyser._rules import Reanalysis, covers, datasets_covered
from app.policy.casbin_model import MAX_LINKS

__all__ = [
    "LEAF_PREFIXES",
    "MAX_LINKS",
    "Directory",
    "Exposure",
    "ExposureAnalyser",
    "GrantExcess",
    "Reanalysis",
    "Within",
    "covers",
    "datasets_covered",
    "is_leaf",
]
