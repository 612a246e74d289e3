"""signed heads; the admin trail and the alert feed hash-chained

The access log's head gets a signature (HMAC over its id and hash, written by every group
commit when ACLAUDIT_CHECKPOINT_KEY is set). The admin trail and the alerts get their own hash
chains: `prev_hash` and `hash` on every row, and a head each (`admin_trail_head` is new,
`alert_head` gains `last_hash` and `signature`). Rows already there are chained here, in id
order, so the chains cover the whole history; when the key is in the environment the three
heads are signed here too (else each is signed by its chain's next write).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 10:00:00.000000
"""

import os
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db
from app import chain

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TRAIL = sa.table(
    'admin_trail',
    sa.column('id', sa.Integer()),
    sa.column('at', app.db.UTCDateTime()),
    *(sa.column(name) for name in chain.TRAIL_FIELDS if name not in ('id', 'at')),
)
ALERTS = sa.table(
    'alerts',
    sa.column('id', sa.Integer()),
    sa.column('at', app.db.UTCDateTime()),
    *(sa.column(name) for name in chain.ALERT_FIELDS if name not in ('id', 'at')),
)


def _chain_rows(table: sa.TableClause, fields: Sequence[str]) -> tuple[int, str]:
    """Chain the table's rows in id order; the (id, hash) of the last (0, genesis if none)."""
    bind = op.get_bind()
    last_id, last_hash = 0, chain.GENESIS
    update = sa.text(
        f'UPDATE {table.name} SET prev_hash = :prev_hash, hash = :hash WHERE id = :row_id'
    )
    after = -(2**31)  # every row (the id columns are 32-bit on PostgreSQL)
    while True:
        rows = bind.execute(
            sa.select(table).where(table.c.id > after).order_by(table.c.id).limit(5000)
        ).mappings().all()
        if not rows:
            return last_id, last_hash
        params = []
        for row in rows:
            digest = chain.record_hash(last_hash, fields, row)
            params.append({'prev_hash': last_hash, 'hash': digest, 'row_id': row['id']})
            last_id, last_hash = row['id'], digest
        bind.execute(update, params)
        after = last_id


def _sign(name: str, head: tuple[int, str]) -> str | None:
    key = os.environ.get('ACLAUDIT_CHECKPOINT_KEY')
    return chain.sign_head(key.encode(), name, *head) if key else None


def upgrade() -> None:
    with op.batch_alter_table('access_log_head', schema=None) as batch_op:
        batch_op.add_column(sa.Column('signature', sa.String(length=64), nullable=True))
    for table in ('admin_trail', 'alerts'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('prev_hash', sa.String(length=64), nullable=True))
            batch_op.add_column(sa.Column('hash', sa.String(length=64), nullable=True))
    with op.batch_alter_table('alert_head', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_hash', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('signature', sa.String(length=64), nullable=True))
    trail_head = op.create_table('admin_trail_head',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('last_id', sa.Integer(), nullable=False),
    sa.Column('last_hash', sa.String(length=64), nullable=False),
    sa.Column('signature', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_admin_trail_head'))
    )
    trail = _chain_rows(TRAIL, chain.TRAIL_FIELDS)
    op.bulk_insert(trail_head, [{
        'id': 1, 'last_id': trail[0], 'last_hash': trail[1],
        'signature': _sign(chain.ADMIN_TRAIL, trail),
    }])
    alerts = _chain_rows(ALERTS, chain.ALERT_FIELDS)
    bind = op.get_bind()
    # The feed's ids were assigned by its head: the head's id stays, and its hash is the
    # newest alert's. If they differ the feed was altered already: the head keeps its id with
    # the genesis hash, and verify reports the mismatch.
    head_id = bind.execute(sa.text('SELECT last_id FROM alert_head WHERE id = 1')).scalar_one()
    if head_id != alerts[0]:
        alerts = (int(head_id), chain.GENESIS)
    bind.execute(
        sa.text('UPDATE alert_head SET last_hash = :h, signature = :s WHERE id = 1'),
        {'h': alerts[1], 's': _sign(chain.ALERTS, alerts)},
    )
    log_head = bind.execute(
        sa.text('SELECT last_id, last_hash FROM access_log_head WHERE id = 1')
    ).one_or_none()
    if log_head is not None:
        bind.execute(
            sa.text('UPDATE access_log_head SET signature = :s WHERE id = 1'),
            {'s': _sign(chain.ACCESS_LOG, (int(log_head[0]), str(log_head[1])))},
        )
    for table in ('admin_trail', 'alerts'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column('prev_hash', existing_type=sa.String(length=64), nullable=False)
            batch_op.alter_column('hash', existing_type=sa.String(length=64), nullable=False)
    with op.batch_alter_table('alert_head', schema=None) as batch_op:
        batch_op.alter_column('last_hash', existing_type=sa.String(length=64), nullable=False)


def downgrade() -> None:
    op.drop_table('admin_trail_head')
    with op.batch_alter_table('alert_head', schema=None) as batch_op:
        batch_op.drop_column('signature')
        batch_op.drop_column('last_hash')
    for table in ('alerts', 'admin_trail'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('hash')
            batch_op.drop_column('prev_hash')
    with op.batch_alter_table('access_log_head', schema=None) as batch_op:
        batch_op.drop_column('signature')
