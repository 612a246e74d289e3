"""How deep groups may nest and still grant: the directory refuses deeper chains, and the
policy's Casbin model (`app.policy.casbin_model`, which re-exports these) stops following
membership links there."""

# pycasbin's default RoleManager(max_hierarchy_level=10): the requesting principal is level 1,
# so a group at most 9 links away is reachable and one 10 links away is not.
CASBIN_MAX_HIERARCHY_LEVEL = 10
# So a principal reaches the groups at most this many membership links above it.
MAX_LINKS = CASBIN_MAX_HIERARCHY_LEVEL - 1
