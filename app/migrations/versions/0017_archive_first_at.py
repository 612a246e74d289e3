"""access_log_archives.first_at: when a segment's first entry was written

A report counts an archived segment's out-of-audience reads in a period only if the segment
may hold entries of it: its last entry at or after `since` and its first at or before
`until`. Segments recorded before this revision have no `first_at` (null) and are counted in
every period their last entry reaches. Signed records cover it when set. Downgrading drops the
column.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 18:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = '0017'
down_revision: str | None = '0016'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('access_log_archives', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('first_at', app.db.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table('access_log_archives', schema=None) as batch_op:
        batch_op.drop_column('first_at')
