"""The policy history by the version that closed a row

Rebuilding the policy at a version from a cached state at a nearby one (`app.policy.history`)
reads the rows opened or closed between the two: by `from_version` (indexed since 0012) and by
`until_version`, which without an index is a full scan of every history table.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07 22:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0021'
down_revision: str | None = '0020'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ('grant_history', 'membership_history', 'dataset_history', 'hold_history')


def upgrade() -> None:
    for table in TABLES:
        op.create_index(f'ix_{table}_until_version', table, ['until_version'])


def downgrade() -> None:
    for table in TABLES:
        op.drop_index(f'ix_{table}_until_version', table_name=table)
