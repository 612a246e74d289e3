"""unused access: findings.last_used_at, grant_last_use and its scan cursor

`unused` findings (an allow grant no read went through for ACLAUDIT_UNUSED_AFTER_DAYS) carry
the grant's last use; at most one is active per grant (a partial unique index). The sweeper
folds allowed reads into `grant_last_use` from `grant_use_scan.through_id` on; the archiver
folds the entries it drops first. A database with entries archived before this revision
starts its fold after them: reads only in those archives do not count as uses. Downgrading
drops all three, and the `unused` findings with them.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 18:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = '0016'
down_revision: str | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LOG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
UNUSED_ACTIVE = "kind = 'unused' AND status IN ('open', 'accepted')"


def upgrade() -> None:
    op.create_table(
        'grant_last_use',
        sa.Column('grant_id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('last_used_at', app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('last_entry_id', LOG_ID, nullable=False),
        sa.PrimaryKeyConstraint('grant_id', name=op.f('pk_grant_last_use')),
    )
    op.create_table(
        'grant_use_scan',
        sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('through_id', LOG_ID, nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_grant_use_scan')),
    )
    # What was archived already cannot be folded: start after it.
    op.execute(
        "INSERT INTO grant_use_scan (id, through_id) "
        "SELECT 1, COALESCE(MAX(last_id), 0) FROM access_log_archives"
    )
    with op.batch_alter_table('findings', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('last_used_at', app.db.UTCDateTime(timezone=True), nullable=True)
        )
        # an `unused` finding's is the grant's resource, up to 514 characters (a 512-character
        # dataset id and ".*")
        batch_op.alter_column(
            'dataset', existing_type=sa.String(length=512), type_=sa.String(length=514)
        )
        batch_op.create_index(
            'uq_findings_unused_grant',
            ['grant_id'],
            unique=True,
            postgresql_where=sa.text(UNUSED_ACTIVE),
            sqlite_where=sa.text(UNUSED_ACTIVE),
        )


def downgrade() -> None:
    op.execute("DELETE FROM findings WHERE kind = 'unused'")
    with op.batch_alter_table('findings', schema=None) as batch_op:
        batch_op.drop_index('uq_findings_unused_grant')
        batch_op.drop_column('last_used_at')
        batch_op.alter_column(
            'dataset', existing_type=sa.String(length=514), type_=sa.String(length=512)
        )
    op.drop_table('grant_use_scan')
    op.drop_table('grant_last_use')
