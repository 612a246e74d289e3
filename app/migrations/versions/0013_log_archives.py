"""access_log_archives: the segments `aclaudit log archive` moved out of the database

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 14:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LOG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table(
        'access_log_archives',
        sa.Column('first_id', LOG_ID, autoincrement=False, nullable=False),
        sa.Column('last_id', LOG_ID, nullable=False),
        sa.Column('segment', sa.String(length=200), nullable=False),
        sa.Column('prev_hash', sa.String(length=64), nullable=False),
        sa.Column('last_hash', sa.String(length=64), nullable=False),
        sa.Column('checkpoint_signature', sa.Text(), nullable=True),
        sa.Column('entries', LOG_ID, nullable=False),
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('last_at', app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('out_of_audience_reads', sa.JSON(), nullable=False),
        sa.Column('archived_at', app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('signature', sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint('first_id', name=op.f('pk_access_log_archives')),
        sa.UniqueConstraint('last_id', name=op.f('uq_access_log_archives_last_id')),
        sa.UniqueConstraint('segment', name=op.f('uq_access_log_archives_segment')),
    )


def downgrade() -> None:
    # While a segment is recorded, its entries exist only in the archive directory: dropping
    # the records would leave the database's chain starting nowhere (verify fails from entry
    # 1 on) and the segments unaccounted for. Refuse rather than lose that.
    archived = op.get_bind().execute(sa.text('SELECT count(*) FROM access_log_archives'))
    if archived.scalar_one():
        raise RuntimeError(
            'access_log_archives records archived segments: their entries are no longer in '
            'the database, and downgrading below 0013 would forget where they went. Stay at '
            '0013 (or restore a backup taken before the first `aclaudit log archive`); to '
            'discard the records knowingly, copy the table and the archive directory '
            'elsewhere and DELETE FROM access_log_archives first.'
        )
    op.drop_table('access_log_archives')
