"""access log: out-of-audience reads indexed on their own (a partial index)

The (out_of_audience, id) index held every entry, nearly all of them in-audience, and cost every
check an index insert. Only out-of-audience reads are looked up by that flag (the in-audience
rest is most of the log, read newest first by id), so the index now holds those alone.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 11:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index('ix_access_log_out_of_audience_id', table_name='access_log')
    op.create_index(
        'ix_access_log_out_of_audience',
        'access_log',
        ['id'],
        unique=False,
        sqlite_where=sa.text('out_of_audience = 1'),
        postgresql_where=sa.text('out_of_audience'),
    )


def downgrade() -> None:
    op.drop_index('ix_access_log_out_of_audience', table_name='access_log')
    op.create_index(
        'ix_access_log_out_of_audience_id', 'access_log', ['out_of_audience', 'id'], unique=False
    )
