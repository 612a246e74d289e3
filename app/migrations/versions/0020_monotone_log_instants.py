"""access_log_head.last_at and monotone_from; the (at, id) index

From here on a group commit stamps its batch with the later of its clock and the head's
`last_at`, so entries from `monotone_from` on have non-decreasing instants and `?since=` and
`?until=` become id bounds found through `ix_access_log_at_id` (ORDER BY at, id LIMIT 1). The
entries already written (ids up to the head) may be out of order, as each writer's clock made
them: `monotone_from` is the head's id + 1, and below it the filters compare `at` itself.
`last_at` starts as the newest instant written (in the database, or in an archived segment
when everything was archived), or now if that is later than now (an entry stamped in the
future by a bad clock). The (at, id) index replaces the (at) one (the same number of
indexes to maintain per check). Downgrading drops the columns and restores the (at) index.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07 21:40:00.000000
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("access_log_head", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_at", app.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column(
                "monotone_from",
                sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                server_default=sa.text("1"),
                nullable=False,
            )
        )
    op.execute("UPDATE access_log_head SET monotone_from = last_id + 1")
    # The newest instant written, but never later than now: an old entry stamped in the future
    # by a bad clock must not become the head's instant (a group commit never decides after
    # its own clock, so such a head would only restart the monotone part at the first batch).
    instant = app.db.UTCDateTime(timezone=True)
    newest_at = sa.func.coalesce(
        sa.text("(SELECT max(at) FROM access_log)"),
        sa.text("(SELECT max(last_at) FROM access_log_archives)"),
    )
    newest = op.get_bind().execute(sa.select(sa.type_coerce(newest_at, instant))).scalar()
    if newest is not None:
        op.get_bind().execute(
            sa.text("UPDATE access_log_head SET last_at = :at").bindparams(
                sa.bindparam("at", min(newest, datetime.now(UTC)), type_=instant)
            )
        )
    op.drop_index("ix_access_log_at", table_name="access_log")
    op.create_index("ix_access_log_at_id", "access_log", ["at", "id"])


def downgrade() -> None:
    op.drop_index("ix_access_log_at_id", table_name="access_log")
    op.create_index("ix_access_log_at", "access_log", ["at"])
    with op.batch_alter_table("access_log_head", schema=None) as batch_op:
        batch_op.drop_column("monotone_from")
        batch_op.drop_column("last_at")
