"""admin_trail.issuer: the OpenID Connect provider that signed a person's token in

People signed in with the company's IdP are trailed by their principal (`user:<id>`, up to 133
characters, so token_name widens to 160) and the IdP's issuer; static tokens leave it NULL.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 11:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('admin_trail', schema=None) as batch_op:
        batch_op.add_column(sa.Column('issuer', sa.String(length=512), nullable=True))
        batch_op.alter_column(
            'token_name',
            existing_type=sa.String(length=128),
            type_=sa.String(length=160),
            existing_nullable=True,
        )


def downgrade() -> None:
    with op.batch_alter_table('admin_trail', schema=None) as batch_op:
        batch_op.alter_column(
            'token_name',
            existing_type=sa.String(length=160),
            type_=sa.String(length=128),
            existing_nullable=True,
        )
        batch_op.drop_column('issuer')
