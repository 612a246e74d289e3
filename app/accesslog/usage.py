"""When each grant was last used: the allowed reads that went through it, folded from the log.

Unused-access findings (`app.exposure.unused`) need, for every live grant, its last use.
Reading every entry's JSON reason for that on each sweep would cost a full scan of the log; so
the sweeper folds the log into ``grant_last_use`` incrementally instead, from a cursor
(``grant_use_scan.through_id``) on: one range scan of the primary key over the entries added
since its last tick, grouped by the grant their reason names, and one upsert per distinct
grant. The check path is untouched: no statement is added to the access-log group commit.

Why a cursor is sound: entry ids are assigned under the chain head's lock, held until the
batch commits, so an entry with an id at or below the committed head's ``last_id`` is already
visible and none can appear below it later. A fold reads the head first and goes no further.

Archiving (`app.accesslog.archiver`) drops the oldest entries: it folds through the last entry
of a segment in the transaction that drops it, so no use is lost; the cursor row's lock
serialises it with the sweeper. Both survive restarts: the cursor and the uses are rows.
"""

from sqlalchemy.ext.asyncio import AsyncSession

from app.accesslog import repository

# Entries folded per transaction at most (the sweeper runs one after another, the write lock
# free between them): 50,000 took 1.5 s on SQLite (bench/history.py's log), and SQLite's other
# writers wait for the lock at most the busy timeout (5 s) before failing.
FOLD_PAGE = 10_000


async def is_behind(session: AsyncSession) -> bool:
    """Whether the log has entries the fold has not counted (a read: no lock)."""
    through = await repository.use_scan_through(session)
    return (await repository.get_head(session)).last_id > (through or 0)


async def fold(session: AsyncSession, *, through_id: int | None = None) -> int:
    """Fold the entries after the cursor into ``grant_last_use``, up to `through_id` (all of
    them, the archiver's segment) or to the committed head (at most `FOLD_PAGE`: the
    sweeper's tick); in the caller's write transaction. Returns the new cursor."""
    start = await repository.lock_use_scan(session)
    end = through_id
    if end is None:
        end = min((await repository.get_head(session)).last_id, start + FOLD_PAGE)
    cursor = start
    while cursor < end:
        upto = min(end, cursor + FOLD_PAGE)
        await repository.record_uses(
            session, await repository.uses_between(session, after=cursor, up_to=upto)
        )
        cursor = upto
    if cursor != start:
        await repository.move_use_scan(session, cursor)
    return cursor
