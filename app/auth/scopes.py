from enum import StrEnum


class Scope(StrEnum):
    check = "check"
    audit_read = "audit:read"
    policy_write = "policy:write"
    alerts_read = "alerts:read"
    admin = "admin"
    metrics_read = "metrics:read"
    scim = "scim"  # the IdP pushing users and groups (/scim/v2)
