"""findings.kind: what a finding is about; every finding so far is an exposure

Exposure findings (a grant that lets principals outside a dataset's audience read it) are
`exposure`, the default; unused-access findings will be `unused`. Existing rows become
`exposure`. Downgrading drops the column.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 18:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0015'
down_revision: str | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('findings', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('kind', sa.String(length=16), server_default='exposure', nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table('findings', schema=None) as batch_op:
        batch_op.drop_column('kind')
