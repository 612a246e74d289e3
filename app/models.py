"""Every ORM model, imported so ``Base.metadata`` is complete (Alembic, tests)."""

from app.accesslog.models import (
    AccessLogArchive,
    AccessLogCheckpoint,
    AccessLogEntry,
    AccessLogHead,
    AccessLogSubject,
)
from app.alerts.models import Alert, AlertHead
from app.auth.models import ApiToken, TrailEntry
from app.datasets.models import Dataset
from app.db import Base
from app.directory.models import Group, Membership
from app.exposure.models import Finding
from app.holds.models import Hold
from app.identity.models import ScimGroup, ScimMemberDisplay, ScimUser
from app.operations.models import Lease
from app.policy.models import Grant
from app.policy_version import PolicyVersion

__all__ = [
    "AccessLogArchive",
    "AccessLogCheckpoint",
    "AccessLogEntry",
    "AccessLogHead",
    "AccessLogSubject",
    "Alert",
    "AlertHead",
    "ApiToken",
    "Base",
    "Dataset",
    "Finding",
    "Grant",
    "Group",
    "Hold",
    "Lease",
    "Membership",
    "PolicyVersion",
    "ScimGroup",
    "ScimMemberDisplay",
    "ScimUser",
    "TrailEntry",
]
