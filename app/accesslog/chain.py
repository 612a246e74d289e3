"""Moved to `app.chain` (the access log, the admin trail and the alert feed share it). This
re-export serves the check path's modules (`batch`, `log_store`) until they move to
`app.checks` (issue #17); delete it then."""

from app.chain import (
    ACCESS_LOG,
    ALERT_FIELDS,
    CHAINED_FIELDS,
    GENESIS,
    entry_hash,
    sign_checkpoint,
    sign_head,
    utc_text,
)

__all__ = [
    "ACCESS_LOG",
    "ALERT_FIELDS",
    "CHAINED_FIELDS",
    "GENESIS",
    "entry_hash",
    "sign_checkpoint",
    "sign_head",
    "utc_text",
]
