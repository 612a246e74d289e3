"""Policy history: policy_versions, grant_history, membership_history, dataset_history,
hold_history

`policy_versions`: each committed policy version, the instant it took effect and who made it
(`app.policy_version`). Append-only validity rows (`app.policy.history`): each holds from
(`from_version`, `from_at`) until (`until_version`, `until_at`), open while the until fields are
NULL, with who made the change at either end where known.

An existing database gets its current policy as the first history: rows open from version 0 at
the migration's instant, by 'migration', and the current version recorded at that instant. An
instant before it is before any history (`at=` answers an empty policy, version 0): the versions
before the migration have no recorded instant, and what was revoked or removed before it is not
known. Downgrading drops the history.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 14:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ('policy_versions', 'grant_history', 'membership_history', 'dataset_history', 'hold_history')


def _validity() -> list[sa.Column]:
    return [
        sa.Column('from_version', sa.Integer(), nullable=False),
        sa.Column('from_at', app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('from_by', sa.String(length=160), nullable=True),
        sa.Column('until_version', sa.Integer(), nullable=True),
        sa.Column('until_at', app.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column('until_by', sa.String(length=160), nullable=True),
    ]


def upgrade() -> None:
    op.create_table('policy_versions',
    sa.Column('version', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('by', sa.String(length=160), nullable=True),
    sa.PrimaryKeyConstraint('version', name=op.f('pk_policy_versions'))
    )
    op.create_index('ix_policy_versions_at', 'policy_versions', ['at'], unique=False)
    op.create_table('grant_history',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('grant_id', sa.Integer(), nullable=False),
    sa.Column('principal', sa.String(length=140), nullable=False),
    sa.Column('resource', sa.String(length=514), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('effect', sa.String(length=8), nullable=False),
    sa.Column('expires_at', app.db.UTCDateTime(timezone=True), nullable=True),
    *_validity(),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_grant_history'))
    )
    op.create_table('membership_history',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('group_id', sa.String(length=140), nullable=False),
    sa.Column('member', sa.String(length=140), nullable=False),
    *_validity(),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_membership_history'))
    )
    op.create_table('dataset_history',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('dataset_id', sa.String(length=512), nullable=False),
    sa.Column('sensitivity', sa.String(length=16), nullable=False),
    sa.Column('audience', sa.JSON(), nullable=False),
    sa.Column('guard', sa.String(length=8), nullable=False),
    *_validity(),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dataset_history'))
    )
    op.create_table('hold_history',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('hold_id', sa.Integer(), nullable=False),
    sa.Column('principal', sa.String(length=140), nullable=False),
    sa.Column('dataset', sa.String(length=514), nullable=False),
    *_validity(),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_hold_history'))
    )
    keys = {
        'grant_history': ['grant_id'],
        'membership_history': ['group_id', 'member'],
        'dataset_history': ['dataset_id'],
        'hold_history': ['hold_id'],
    }
    for table, columns in keys.items():
        name = table.removesuffix('_history')
        key = 'group_member' if name == 'membership' else columns[0]
        op.create_index(f'ix_{table}_{key}', table, columns, unique=False)
        op.create_index(f'ix_{table}_from_version', table, ['from_version'], unique=False)
        op.create_index(f'ix_{table}_from_at', table, ['from_at'], unique=False)
        op.create_index(f'ix_{table}_until_at', table, ['until_at'], unique=False)
    _backfill()


def _backfill() -> None:
    """The current policy as the first history, from version 0 at the migration's instant (in
    SQL, so a large database is copied in the database), and the current version recorded at
    that instant."""
    bind = op.get_bind()
    version = bind.execute(sa.text('SELECT version FROM policy_state WHERE id = 1')).scalar()
    version = int(version or 0)
    now = app.db.utcnow()
    if bind.dialect.name == 'sqlite':
        now_param: object = app.db.sqlite_datetime(now)
    else:
        now_param = now
    params = {'v': 0, 'now': now_param, 'by': 'migration'}
    op.execute(sa.text(
        'INSERT INTO grant_history (grant_id, principal, resource, action, effect, expires_at, '
        'from_version, from_at, from_by) '
        'SELECT id, principal, resource, action, effect, expires_at, :v, :now, :by '
        'FROM grants WHERE revoked_at IS NULL'
    ).bindparams(**params))
    op.execute(sa.text(
        'INSERT INTO membership_history (group_id, member, from_version, from_at, from_by) '
        'SELECT group_id, member, :v, :now, :by FROM memberships'
    ).bindparams(**params))
    op.execute(sa.text(
        'INSERT INTO dataset_history (dataset_id, sensitivity, audience, guard, '
        'from_version, from_at, from_by) '
        'SELECT id, sensitivity, intended_audience, guard, :v, :now, :by FROM datasets'
    ).bindparams(**params))
    op.execute(sa.text(
        'INSERT INTO hold_history (hold_id, principal, dataset, from_version, from_at, from_by) '
        'SELECT id, principal, dataset, :v, :now, :by FROM holds WHERE released_at IS NULL'
    ).bindparams(**params))
    op.execute(sa.text(
        'INSERT INTO policy_versions (version, "at", "by") VALUES (:version, :now, :by)'
    ).bindparams(version=version, now=now_param, by='migration'))


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table)
