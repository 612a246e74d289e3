"""What the IdP's changes do to the policy: the calls the SCIM routes make.

Every call is one policy change through the same pipeline as the API (load, diff, write:
findings and alerts in the same transaction, published to every worker on commit). None is
refused by the guard: the IdP is the truth about who is in which group, so a membership that
would widen a `block`-guarded dataset beyond its audience becomes a hold instead
(`app.changes.holds`). Principals are full ids, already normalised (`user:alice`,
`group:eng`). Nothing here commits.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from app.exposure.schemas import FindingChanges
from app.holds.schemas import HoldRead


@dataclass(frozen=True)
class Provisioned:
    """What a change did beyond the SCIM resource itself."""

    holds_opened: list[HoldRead] = field(default_factory=list)
    holds_released: list[HoldRead] = field(default_factory=list)
    findings: FindingChanges = field(default_factory=FindingChanges)


async def claim_group(session: AsyncSession, *, group: str, actor: str) -> None:
    """Make `group` IdP-owned, creating it if need be (an API-typed group of that id is
    adopted, members kept until the IdP sets them). Changes no policy."""
    raise NotImplementedError


async def release_group(session: AsyncSession, *, group: str, actor: str) -> Provisioned:
    """The IdP deleted `group`: its members and its own memberships are removed, it is no
    longer IdP-owned; grants naming it stay (and reach nobody)."""
    raise NotImplementedError


async def change_members(
    session: AsyncSession,
    *,
    group: str,
    add: Sequence[str] = (),
    remove: Sequence[str] = (),
    replace: Sequence[str] | None = None,
    actor: str,
) -> Provisioned:
    """One change of an IdP-owned group's direct members: `replace` sets them, else `add` and
    `remove` (members already in or already out are ignored; a no-op change costs no
    re-analysis). Raises `MembershipCycle` (409) for a cycle, `InvalidInput` past the limits."""
    raise NotImplementedError


async def set_active(
    session: AsyncSession, *, principal: str, active: bool, actor: str
) -> Provisioned:
    """A deactivated user loses every access at the next check, in every worker (an
    `inactive` hold: a deny on everything); reactivated, they get it back."""
    raise NotImplementedError


async def forget_user(session: AsyncSession, *, principal: str, actor: str) -> Provisioned:
    """The IdP deleted the user: their memberships are removed and an `inactive` hold denies
    them everything (history keeps what they could read before)."""
    raise NotImplementedError


async def rename_user(session: AsyncSession, *, old: str, new: str, actor: str) -> Provisioned:
    """The user's userName changed: their memberships move from `old` to `new` (guarded like
    any membership change); `old` keeps no access through groups."""
    raise NotImplementedError
