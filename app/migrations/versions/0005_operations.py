"""operations: sweeper lease, recorded grant expiry, alerts by type

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 03:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('leases',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('holder', sa.String(length=200), nullable=False),
    sa.Column('expires_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_leases'))
    )
    op.add_column('grants', sa.Column('expired_at', app.db.UTCDateTime(timezone=True), nullable=True))
    op.create_index('ix_alerts_type_id', 'alerts', ['type', 'id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_alerts_type_id', table_name='alerts')
    with op.batch_alter_table('grants') as batch:
        batch.drop_column('expired_at')
    op.drop_table('leases')
