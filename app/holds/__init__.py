"""Holds: automatic Casbin deny rules the service writes itself.

A `guard` hold keeps one principal off one `block`-guarded dataset that an IdP's membership
change would have widened beyond its audience; an `inactive` hold keeps a deactivated or
deleted SCIM user off everything. Each active hold is a deny rule of the policy (one per action),
so the decision index, the analyser and a plain Casbin enforcer all see it.
"""
