"""Moved to `app.policy_version` (every domain that changes the policy advances it). This
re-export serves `snapshot` and `app.exposure.service` until the policy-state work (issue #17)
rewrites them; delete it then."""

from app.policy_version import TAKEN, advance, current, hold

__all__ = ["TAKEN", "advance", "current", "hold"]
