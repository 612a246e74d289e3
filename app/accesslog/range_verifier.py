"""Verifying the access log over a range of entries (the incident report's integrity).

A full verify reads every entry (`app.accesslog.verifier`); a report over one month of a
ten-million-entry log needs only that month. The chain is recomputed from the newest
checkpoint before the range's first entry (the archived prefix's end, or the genesis, when
there is none) through the oldest checkpoint at or after its last entry (or the head, when
none covers it yet), so the range lies between two marks the service wrote; and that is linked
to the head the way a full verify links the chain to it: every checkpoint at or after
`checkpoint_key_since` validly signed, none beyond the head, the newest at or past the last
multiple of `checkpoint_every` up to the head, the head's own signature valid, the archived
prefix's records holding, and every out-of-audience read alert naming an entry that shows it.

An edited, removed or reordered entry inside the range breaks the recomputed chain (or its
subject rows); one outside it is not read, and `GET /v1/access-log/verify` is what finds it.
"""

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import chain
from app.accesslog import repository
from app.accesslog.models import AccessLogHead
from app.accesslog.schemas import ChainVerifyResult
from app.accesslog.verifier import archived_prefix, feed
from app.config import Settings


@dataclass(frozen=True)
class RangeVerified:
    result: ChainVerifyResult  # `entries`: how many were recomputed
    after: int  # the chain was recomputed from the hash of this entry (0: the genesis)
    through: int  # ... up to this entry (0: nothing was recomputed)
    signed_checkpoints: bool  # checkpoints (and the head) were checked against the key


async def verify_range(
    maker: async_sessionmaker[AsyncSession],
    settings: Settings,
    first: int | None,
    last: int,
    *,
    is_paced: bool = True,
) -> RangeVerified:
    """Verify entries `first..last` and link them to the head (see the module); `first` None:
    no entry to recompute, only the links. Paced as `feed` is."""
    key = settings.checkpoint_key_bytes
    signed_from = settings.checkpoint_key_since
    async with maker() as session:
        misstored_mark = await repository.first_misstored_checkpoint(session)
        checkpoints = {c[0]: (c[1], c[2]) for c in await repository.checkpoint_marks(session)}
        head = await repository.find_head(session)
        records = await repository.archive_records(session)
    archived, archive_problem = archived_prefix(records, checkpoints, key, signed_from)
    base = (0, chain.GENESIS) if archived is None else (archived.last_id, archived.last_hash)
    head_signed = key is not None and head is not None and head.last_id >= signed_from
    marks = {cid: mark for cid, (mark, _) in checkpoints.items()}
    if first is not None:
        after = max((c for c in marks if base[0] <= c < first), default=base[0])
        start = base if after == base[0] else (after, marks[after])
    else:
        start = (0, chain.GENESIS)

    def done(
        first_bad_id: int | None, problem: str | None, verifier: chain.ChainVerifier | None
    ) -> RangeVerified:
        checked = 0 if verifier is None else verifier.checked
        if first_bad_id is not None:
            checked = min(checked, first_bad_id - 1)
        result = ChainVerifyResult(
            chain=chain.ACCESS_LOG,
            ok=first_bad_id is None,
            entries=max(checked - start[0], 0),
            head_id=None if head is None else head.last_id,
            head=None if head is None else head.last_hash,
            head_signed=head_signed,
            first_bad_id=first_bad_id,
            problem=problem,
            archived=archived,
        )
        through = checked if checked > start[0] else 0
        return RangeVerified(result, start[0], through, key is not None)

    if misstored_mark is not None:
        return done(
            misstored_mark,
            f"the checkpoint at entry {misstored_mark} is stored in a form the service never "
            "writes (a column's type or format was changed in the database)",
            None,
        )
    if head is None:
        return done(1, "the access log's head row is missing", None)
    if archive_problem is not None:
        return done(archive_problem[0], archive_problem[1], None)
    linked = await _head_link(maker, settings, checkpoints, head, base[0])
    if linked is not None:
        return done(linked[0], linked[1], None)
    if first is None:
        return done(None, None, None)
    covering = min((c for c in marks if c >= last), default=head.last_id)
    verifier = chain.ChainVerifier(marks, start)
    failed = await feed(maker, verifier, covering, is_paced=is_paced)
    if failed is not None:
        return done(failed[0], failed[1], verifier)
    if verifier.first_bad_id is not None:
        return done(verifier.first_bad_id, verifier.problem, verifier)
    if verifier.checked != covering:
        return done(
            verifier.checked + 1,
            f"the log ends at entry {verifier.checked} but the checkpoint or the head records "
            f"{covering}: entries were removed",
            verifier,
        )
    if covering == head.last_id and verifier.head != head.last_hash:
        return done(covering, f"entry {covering} differs from the head", verifier)
    return done(None, None, verifier)


async def _head_link(
    maker: async_sessionmaker[AsyncSession],
    settings: Settings,
    checkpoints: dict[int, tuple[str, str | None]],
    head: AccessLogHead,
    archived_through: int,
) -> tuple[int, str] | None:
    """What breaks the link from the checkpoints to the head (entry id, problem), if anything:
    the checks of a full verify that read no entry."""
    key = settings.checkpoint_key_bytes
    if key is not None:
        for cid in sorted(c for c in checkpoints if c >= settings.checkpoint_key_since):
            mark, signature = checkpoints[cid]
            if signature is None or not chain.checkpoint_signature_ok(key, cid, mark, signature):
                return cid, f"checkpoint at entry {cid} has no valid signature"
    beyond = [c for c in checkpoints if c > head.last_id]
    if beyond:
        return head.last_id + 1, (
            f"the log ends at entry {head.last_id} but a checkpoint records {max(beyond)}: "
            "entries were removed"
        )
    newest = max(checkpoints, default=0)
    every = settings.checkpoint_every
    if head.last_id // every > newest // every:
        return newest + 1, (
            f"no checkpoint covers entries {newest + 1} to {head.last_id}, though one is "
            f"written in every transaction that passes a multiple of {every}: checkpoints "
            "were removed"
        )
    if (
        key is not None
        and head.last_id >= settings.checkpoint_key_since
        and not chain.head_signature_ok(
            key, chain.ACCESS_LOG, head.last_id, head.last_hash, head.signature
        )
    ):
        return newest + 1, (
            f"the head (entry {head.last_id}) has no valid signature: the entries after the "
            f"checkpoint at {newest} were rewritten or removed, or the head was moved"
        )
    async with maker() as session:
        outside = await repository.first_outside(session, below=archived_through + 1)
        beyond_head = await repository.first_outside(session, below=1, above=head.last_id)
        now = await repository.find_head(session)
        unlogged = await repository.first_unlogged_read_alert(session, after=archived_through)
        uncounted = await repository.first_unlogged_window_read(session, after=archived_through)
    if outside is not None:
        return outside, f"entry {outside} lies outside the chain"
    if beyond_head is not None and (now is None or beyond_head > now.last_id):
        return beyond_head, (
            f"entry {beyond_head} lies beyond the head ({head.last_id}): the head was moved "
            "back or entries were inserted outside the chain"
        )
    for found, verb in ((unlogged, "records"), (uncounted, "counts")):
        if found is not None:
            alert_id, entry_id = found
            return min(entry_id, head.last_id + 1), (
                f"alert {alert_id} {verb} an out-of-audience read at entry {entry_id}, which "
                "the log does not show: entries were removed (the log was rolled back) or edited"
            )
    return None
