"""Purposes: grants.purposes (and grant_history's), datasets.purpose_required (and
dataset_history's)

Existing grants (and their history rows) are for any purpose, `["*"]`: what they matched before.
A dataset requires a purpose when confidential or restricted. Existing dataset history rows keep
`purpose_required` false, the truth when they held (so replaying an entry decided before this
migration gives its recorded decision); where a dataset now requires a purpose, the migration is
a policy change: one new version, recorded at the migration's instant by 'migration', closes its
open history row and opens one that requires it. Downgrading drops the columns (the rows of that
version stay, equal but for the dropped column).

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07 21:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = '0022'
down_revision: str | None = '0021'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ANY = sa.text("'[\"*\"]'")
SENSITIVE = "('confidential', 'restricted')"


def upgrade() -> None:
    # Plain ALTER TABLE ... ADD/DROP COLUMN (SQLite has both): a batch copy of `grants` would
    # drop the table that findings and holds refer to.
    for table in ('grants', 'grant_history'):
        op.add_column(table, sa.Column('purposes', sa.JSON(), server_default=ANY, nullable=False))
    for table in ('datasets', 'dataset_history'):
        op.add_column(
            table,
            sa.Column('purpose_required', sa.Boolean(), server_default=sa.false(), nullable=False),
        )
    op.execute(sa.text(
        f'UPDATE datasets SET purpose_required = true WHERE sensitivity IN {SENSITIVE}'
    ))
    _record_requirement()


def _record_requirement() -> None:
    """The datasets that now require a purpose, as a policy change in the history."""
    bind = op.get_bind()
    required = bind.execute(
        sa.text('SELECT count(*) FROM datasets WHERE purpose_required')
    ).scalar()
    if not required:
        return
    current = bind.execute(sa.text('SELECT version FROM policy_state WHERE id = 1')).scalar()
    if current is None:
        return  # no policy version taken yet: no history to continue
    version = int(current) + 1
    now = app.db.utcnow()
    now_param: object = app.db.sqlite_datetime(now) if bind.dialect.name == 'sqlite' else now
    params = {'v': version, 'now': now_param, 'by': 'migration'}
    op.execute(sa.text('UPDATE policy_state SET version = :v WHERE id = 1').bindparams(v=version))
    op.execute(sa.text(
        'INSERT INTO policy_versions (version, "at", "by") VALUES (:v, :now, :by)'
    ).bindparams(**params))
    sensitive = 'SELECT id FROM datasets WHERE purpose_required'
    op.execute(sa.text(
        'INSERT INTO dataset_history (dataset_id, sensitivity, audience, guard, purpose_required, '
        'from_version, from_at, from_by) '
        'SELECT dataset_id, sensitivity, audience, guard, true, :v, :now, :by '
        f'FROM dataset_history WHERE until_version IS NULL AND dataset_id IN ({sensitive})'
    ).bindparams(**params))
    op.execute(sa.text(
        'UPDATE dataset_history SET until_version = :v, until_at = :now, until_by = :by '
        f'WHERE until_version IS NULL AND from_version < :v AND dataset_id IN ({sensitive})'
    ).bindparams(**params))


def downgrade() -> None:
    for table in ('dataset_history', 'datasets'):
        op.drop_column(table, 'purpose_required')
    for table in ('grant_history', 'grants'):
        op.drop_column(table, 'purposes')
