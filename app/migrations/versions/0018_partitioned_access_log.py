"""PostgreSQL: the access log and its subjects partitioned by entry id (SQLite: unchanged)

The rows are copied as they are (no entry is re-hashed) into partitioned tables with partitions
for the existing ids and `partitions.AHEAD` partitions beyond the head, then the indexes are
built under the model's names (see `app.accesslog.partitions` for why by id, why the subjects
lose their foreign key, and why ``decision_id`` is no longer unique on PostgreSQL: a unique
constraint on a partitioned table must include the partition key). The downgrade copies them
back into plain tables with the old constraints.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 18:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.accesslog import partitions
from app.config import Settings

revision: str = '0018'
down_revision: str | None = '0017'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LOG, SUBJECTS = partitions.LOG, partitions.SUBJECTS


def _scalar(sql: str) -> int:
    return int(op.get_bind().execute(sa.text(sql)).scalar() or 0)


def _copy_into(table: str, partitioned_by: str | None) -> None:
    """`table`'s rows into a new table `<table>_copy` (partitioned by that column if given),
    then `table` dropped and the copy renamed: every row, or the migration fails."""
    copy = f'{table}_copy'
    by = '' if partitioned_by is None else f' PARTITION BY RANGE ({partitioned_by})'
    op.execute(f'CREATE TABLE {copy} (LIKE {table} INCLUDING DEFAULTS){by}')
    if partitioned_by is not None:
        size = Settings().log_partition_entries
        head = _scalar('SELECT last_id FROM access_log_head WHERE id = 1')
        newest = max(head, _scalar('SELECT max(id) FROM access_log'))
        oldest = _scalar('SELECT min(id) FROM access_log') or newest + 1
        for start, end in partitions.missing_ranges(
            [], oldest, newest + partitions.AHEAD * size, size
        ):
            op.execute(
                f'CREATE TABLE {partitions.partition_name(table, start)} PARTITION OF {copy} '
                f'FOR VALUES FROM ({start}) TO ({end})'
            )
    key = 'id' if table == LOG else 'entry_id'
    op.execute(f'INSERT INTO {copy} SELECT * FROM {table} ORDER BY {key}')
    moved, held = _scalar(f'SELECT count(*) FROM {copy}'), _scalar(f'SELECT count(*) FROM {table}')
    if moved != held:
        raise RuntimeError(f'{table}: {held} rows, {moved} copied; nothing was changed')


def _replace(table: str) -> None:
    op.execute(f'DROP TABLE {table}')
    op.execute(f'ALTER TABLE {table}_copy RENAME TO {table}')


def _log_indexes() -> None:
    op.create_index('ix_access_log_principal_id', LOG, ['principal', 'id'])
    op.create_index('ix_access_log_dataset_id', LOG, ['dataset', 'id'])
    op.create_index('ix_access_log_decision_id_order', LOG, ['decision', 'id'])
    op.create_index(
        'ix_access_log_out_of_audience', LOG, ['id'], postgresql_where=sa.text('out_of_audience')
    )
    op.create_index('ix_access_log_at', LOG, ['at'])


def upgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    _copy_into(LOG, 'id')
    _copy_into(SUBJECTS, 'entry_id')
    _replace(SUBJECTS)  # first: its foreign key refers to the log
    _replace(LOG)
    op.create_primary_key('pk_access_log', LOG, ['id'])
    _log_indexes()
    op.create_primary_key('pk_access_log_subjects', SUBJECTS, ['subject', 'entry_id'])


def downgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    _copy_into(LOG, None)
    _copy_into(SUBJECTS, None)
    _replace(SUBJECTS)
    _replace(LOG)  # drops its partitions with it
    op.create_primary_key('pk_access_log', LOG, ['id'])
    op.create_unique_constraint('uq_access_log_decision_id', LOG, ['decision_id'])
    _log_indexes()
    op.create_primary_key('pk_access_log_subjects', SUBJECTS, ['subject', 'entry_id'])
    op.create_foreign_key(
        'fk_access_log_subjects_entry_id_access_log',
        SUBJECTS,
        LOG,
        ['entry_id'],
        ['id'],
        ondelete='CASCADE',
    )
