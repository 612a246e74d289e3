"""access_log_subjects by entry id: the foreign key's index

Without it every entry removed from access_log (archiving) made PostgreSQL's ON DELETE CASCADE
scan all of access_log_subjects, and verify read a page's subject rows by a full scan: with
10 million entries neither finishes.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 18:10:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0019'
down_revision: str | None = '0018'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f('ix_access_log_subjects_entry_id'), 'access_log_subjects', ['entry_id'])


def downgrade() -> None:
    op.drop_index(op.f('ix_access_log_subjects_entry_id'), table_name='access_log_subjects')
