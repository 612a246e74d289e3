"""Moved to `app.policy_version` (every domain that changes the policy advances it). This
re-export serves `snapshot` until the policy-state work (issue #17) rewrites it; delete it
then."""

from app.policy_version import TAKEN, advance, current, hold

__all__ = ["TAKEN", "advance", "current", "hold"]
