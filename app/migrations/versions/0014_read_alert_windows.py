"""read_alert_windows: read.out_of_audience alerts raised once per (principal, dataset, kind of read, window)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 17:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = '0014'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LOG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    # Alerts raised before this revision each stand for one read: they need no window.
    op.create_table(
        'read_alert_windows',
        sa.Column('principal', sa.String(length=140), nullable=False),
        sa.Column('dataset', sa.String(length=512), nullable=False),
        sa.Column('action', sa.String(length=16), nullable=False),
        sa.Column('grant_id', sa.Integer(), nullable=False),
        sa.Column('severity', sa.String(length=8), nullable=False),
        sa.Column('window_start', app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('window_end', app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('alert_id', LOG_ID, nullable=False),
        sa.Column('reads', LOG_ID, nullable=False),
        sa.Column('last_read_id', LOG_ID, nullable=False),
        sa.PrimaryKeyConstraint(
            'principal',
            'dataset',
            'action',
            'grant_id',
            'severity',
            'window_start',
            name=op.f('pk_read_alert_windows'),
        ),
        sa.UniqueConstraint('alert_id', name=op.f('uq_read_alert_windows_alert_id')),
    )


def downgrade() -> None:
    op.drop_table('read_alert_windows')
