"""findings: room on each page for updated rows (PostgreSQL)

A membership change rewrites hundreds of findings (count, sample, paths). With full pages
every new row version went to another page and every index got an entry for it; with room
left on the page the update is heap-only and the indexes are untouched. SQLite updates in
place and has no such setting.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 11:35:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('ALTER TABLE findings SET (fillfactor = 70)')


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('ALTER TABLE findings RESET (fillfactor)')
