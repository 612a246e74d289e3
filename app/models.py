"""Every ORM model, imported so ``Base.metadata`` is complete (Alembic, tests)."""

from app.accesslog.models import (
    AccessLogArchive,
    AccessLogCheckpoint,
    AccessLogEntry,
    AccessLogHead,
    AccessLogSubject,
    GrantLastUse,
    UseScan,
)
from app.alerts.models import Alert, AlertHead
from app.approvals.models import Approval, BreakGlass
from app.auth.models import ApiToken, TrailEntry
from app.datasets.models import Dataset
from app.db import Base
from app.directory.models import Group, Membership, MembershipHistory
from app.exposure.models import Finding
from app.holds.models import Hold
from app.identity.models import ScimGroup, ScimMemberDisplay, ScimUser
from app.operations.models import Lease
from app.policy.history.models import DatasetHistory, GrantHistory, HoldHistory
from app.policy.models import Grant
from app.policy_version import PolicyVersion, PolicyVersionRecord

__all__ = [
    "AccessLogArchive",
    "AccessLogCheckpoint",
    "AccessLogEntry",
    "AccessLogHead",
    "AccessLogSubject",
    "Alert",
    "AlertHead",
    "ApiToken",
    "Approval",
    "Base",
    "BreakGlass",
    "Dataset",
    "DatasetHistory",
    "Finding",
    "Grant",
    "GrantHistory",
    "GrantLastUse",
    "Group",
    "Hold",
    "HoldHistory",
    "Lease",
    "Membership",
    "MembershipHistory",
    "PolicyVersion",
    "PolicyVersionRecord",
    "ScimGroup",
    "ScimMemberDisplay",
    "ScimUser",
    "TrailEntry",
    "UseScan",
]
