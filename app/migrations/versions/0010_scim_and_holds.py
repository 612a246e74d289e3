"""SCIM users and groups, holds, IdP-owned groups

`scim_users` and `scim_groups` keep what the IdP pushed (by their SCIM ids; `display_name_key`
is the displayName as SCIM compares it, unique among groups), and
`scim_member_displays` the `display` it sent with a group member; `holds` are the
automatic deny rules (a `guard` hold per principal and block-guarded dataset an IdP change would
have widened, an `inactive` hold on `*` per deactivated or deleted user); `groups.managed_by` is
"scim" for the groups the IdP owns.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 07:27:04.216254
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('holds',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('principal', sa.String(length=140), nullable=False),
    sa.Column('dataset', sa.String(length=514), nullable=False),
    sa.Column('group_id', sa.String(length=140), nullable=True),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=128), nullable=False),
    sa.Column('released_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('released_by', sa.String(length=128), nullable=True),
    sa.Column('release_reason', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_holds'))
    )
    with op.batch_alter_table('holds', schema=None) as batch_op:
        batch_op.create_index('ix_holds_dataset_principal', ['dataset', 'principal'], unique=False)
        batch_op.create_index(batch_op.f('ix_holds_principal'), ['principal'], unique=False)
        batch_op.create_index(batch_op.f('ix_holds_released_at'), ['released_at'], unique=False)
        batch_op.create_index('uq_holds_active', ['kind', 'principal', 'dataset'], unique=True, sqlite_where=sa.text('released_at IS NULL'), postgresql_where=sa.text('released_at IS NULL'))

    op.create_table('scim_users',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('principal', sa.String(length=140), nullable=False),
    sa.Column('user_name', sa.String(length=256), nullable=False),
    sa.Column('external_id', sa.String(length=256), nullable=True),
    sa.Column('display_name', sa.String(length=256), nullable=True),
    sa.Column('display_name_key', sa.String(length=256), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('resource', sa.JSON(), nullable=False),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scim_users')),
    sa.UniqueConstraint('principal', name=op.f('uq_scim_users_principal'))
    )
    with op.batch_alter_table('scim_users', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_scim_users_display_name_key'), ['display_name_key'], unique=False)
        batch_op.create_index(batch_op.f('ix_scim_users_external_id'), ['external_id'], unique=False)

    op.create_table('scim_groups',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('group_id', sa.String(length=140), nullable=False),
    sa.Column('display_name', sa.String(length=256), nullable=False),
    sa.Column('display_name_key', sa.String(length=256), nullable=False),
    sa.Column('external_id', sa.String(length=256), nullable=True),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['group_id'], ['groups.id'], name=op.f('fk_scim_groups_group_id_groups'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scim_groups')),
    sa.UniqueConstraint('display_name_key', name=op.f('uq_scim_groups_display_name_key')),
    sa.UniqueConstraint('group_id', name=op.f('uq_scim_groups_group_id'))
    )
    with op.batch_alter_table('scim_groups', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_scim_groups_external_id'), ['external_id'], unique=False)

    op.create_table('scim_member_displays',
    sa.Column('group_id', sa.String(length=36), nullable=False),
    sa.Column('member_id', sa.String(length=36), nullable=False),
    sa.Column('display', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['group_id'], ['scim_groups.id'], name=op.f('fk_scim_member_displays_group_id_scim_groups'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('group_id', 'member_id', name=op.f('pk_scim_member_displays'))
    )

    with op.batch_alter_table('groups', schema=None) as batch_op:
        batch_op.add_column(sa.Column('managed_by', sa.String(length=16), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('groups', schema=None) as batch_op:
        batch_op.drop_column('managed_by')

    op.drop_table('scim_member_displays')

    with op.batch_alter_table('scim_groups', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_scim_groups_external_id'))

    op.drop_table('scim_groups')
    with op.batch_alter_table('scim_users', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_scim_users_external_id'))
        batch_op.drop_index(batch_op.f('ix_scim_users_display_name_key'))

    op.drop_table('scim_users')
    with op.batch_alter_table('holds', schema=None) as batch_op:
        batch_op.drop_index('uq_holds_active', sqlite_where=sa.text('released_at IS NULL'), postgresql_where=sa.text('released_at IS NULL'))
        batch_op.drop_index(batch_op.f('ix_holds_released_at'))
        batch_op.drop_index(batch_op.f('ix_holds_principal'))
        batch_op.drop_index('ix_holds_dataset_principal')

    op.drop_table('holds')
