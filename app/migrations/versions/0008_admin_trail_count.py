"""admin_trail.count: one row may stand for many refusals of unauthenticated requests

Requests refused before their caller was known (no, unknown or revoked token) are counted in
memory and written periodically as one row per (method, path, status) with their count; every
other row stands for one request (count 1).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('admin_trail', schema=None) as batch_op:
        batch_op.add_column(sa.Column('count', sa.Integer(), server_default='1', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('admin_trail', schema=None) as batch_op:
        batch_op.drop_column('count')
