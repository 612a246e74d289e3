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
        sa.Column('archived_at', app.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('first_id', name=op.f('pk_access_log_archives')),
        sa.UniqueConstraint('last_id', name=op.f('uq_access_log_archives_last_id')),
        sa.UniqueConstraint('segment', name=op.f('uq_access_log_archives_segment')),
    )


def downgrade() -> None:
    # The archived entries stay in their segments; without this table the database's chain
    # no longer says where it resumes, so verify fails until they are loaded back.
    op.drop_table('access_log_archives')
