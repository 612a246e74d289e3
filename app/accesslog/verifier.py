"""Verifying the access log's hash chain, off the event loop and resumable.

Entries are fetched in pages of `PAGE` (short read transactions, so writers are never held) and
each page is hashed in a thread, so a verify of millions of entries costs the event loop only
the fetches; after each page it rests twice as long as the page took (`StepPacer`), so checks
keep most of a worker's CPU under a verify loop. A verify can start after an entry an earlier
verify in this process checked against a checkpoint (`resume`): the prefix up to it is
trusted, not read again, once the checkpoint row and the entry still carry the hash it was
verified with.
"""

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import chain
from app.accesslog import repository
from app.accesslog.models import AccessLogArchive
from app.accesslog.schemas import ArchivedPrefix, ChainVerifyResult
from app.config import Settings
from app.fairness import StepPacer

# Entries per read transaction (and per step of `StepPacer`).
PAGE = 500


@dataclass(frozen=True)
class LogVerified:
    result: ChainVerifyResult
    checkpoints: int
    resume: tuple[int, str] | None  # where the next verify may start (a verified checkpoint)


def _check_page(
    verifier: chain.ChainVerifier, rows: Sequence[RowMapping], subjects: dict[int, set[str]]
) -> tuple[int, str] | None:
    """Feed a page (in a thread); a failure the verifier does not record is returned."""
    for entry in rows:
        if not verifier.feed(entry):
            return None
        if subjects.get(entry["id"], set()) != set(entry["data_subjects"] or ()):
            # the entry is intact, but ?data_subject= would not find it (or find it wrongly)
            return entry["id"], f"the data_subject index of entry {entry['id']} differs from it"
    return None


async def verify_log(
    maker: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    anchor: tuple[int, str] | None = None,
    resume: tuple[int, str] | None = None,
) -> LogVerified:
    """`verify_once`, again from the new archived prefix while a failure coincides with an
    archive run dropping entries under it (a page read as the entries or their subject rows
    were dropped would look like tampering). The archive records a segment in the
    transaction that drops its entries, so a verify that saw any of that sees a newer record;
    an archive run ends, so this does too."""
    while True:
        verified, archived_through = await verify_once(
            maker, settings, anchor=anchor, resume=resume
        )
        if verified.result.ok:
            return verified
        async with maker() as session:
            newest = await repository.newest_archive(session)
        if (0 if newest is None else newest.last_id) <= archived_through:
            return verified


async def verify_once(
    maker: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    anchor: tuple[int, str] | None = None,
    resume: tuple[int, str] | None = None,
) -> tuple[LogVerified, int]:
    """The log's verification, and the last id the archive records it read end at.

    Recompute the chain; compare with the signed head, every checkpoint and an anchor.

    With a checkpoint key, every checkpoint at or after entry `checkpoint_key_since` must be
    validly signed (those before it were written before the key was set; each still has to
    match the chain, and a signed checkpoint after them covers every entry they do), and so
    must the head once it is at or past that entry: every group commit signs it, so a
    rewritten or removed tail after the newest checkpoint is caught too. The log stores write
    a checkpoint in every transaction that passes a multiple of `checkpoint_every`, so the
    newest checkpoint must be at or past the last multiple up to the head. Every
    ``read.out_of_audience`` alert must name an entry that shows that read: a log rolled back
    to an older (signed) head loses the entries its alerts name.

    The head is read first and entries up to it are streamed in short transactions, so
    concurrent writers are not blocked and entries appended meanwhile are not half-seen. Rows
    outside the chain (ids below 1, or beyond the head once it is read again) fail too: the API
    would serve them as entries.
    """
    key = settings.checkpoint_key_bytes
    checkpoint_every = settings.checkpoint_every
    signed_from = settings.checkpoint_key_since
    async with maker() as session:
        # Checkpoints first: one is committed with the entries it marks, so every checkpoint
        # read here is at or below the head read next, even under READ COMMITTED with writers
        # appending in between. A checkpoint beyond the head then means a truncated log.
        misstored_mark = await repository.first_misstored_checkpoint(session)
        checkpoints = {c[0]: (c[1], c[2]) for c in await repository.checkpoint_marks(session)}
        head = await repository.find_head(session)
        records = await repository.archive_records(session)
        recorded_through = records[-1].last_id if records else 0
        archived, archive_problem = archived_prefix(records, checkpoints, key, signed_from)
        base = (0, chain.GENESIS) if archived is None else (archived.last_id, archived.last_hash)
        low = await repository.first_outside(session, below=base[0] + 1)
        start = await _resume_point(session, resume, checkpoints, head, base[0])
    head_signed = key is not None and head is not None and head.last_id >= signed_from

    def bad(first_bad_id: int, problem: str, checked: int) -> tuple[LogVerified, int]:
        result = ChainVerifyResult(
            chain=chain.ACCESS_LOG,
            ok=False,
            entries=checked,
            head_id=None if head is None else head.last_id,
            head_signed=head_signed,
            first_bad_id=first_bad_id,
            problem=problem,
            archived=archived,
        )
        return LogVerified(result, len(checkpoints), None), recorded_through

    if misstored_mark is not None:
        return bad(
            misstored_mark,
            f"the checkpoint at entry {misstored_mark} is stored in a form the service never "
            "writes (a column's type or format was changed in the database)",
            0,
        )
    if head is None:
        return bad(1, "the access log's head row is missing", 0)
    if archive_problem is not None:
        return bad(archive_problem[0], archive_problem[1], 0)
    if low is not None:
        where = "starts at entry 1" if archived is None else f"resumes after the archived {base[0]}"
        return bad(low, f"entry {low} lies outside the chain, which {where}", 0)
    marks = {cid: mark for cid, (mark, _) in checkpoints.items()}
    if key is not None:
        for cid in sorted(c for c in checkpoints if c >= signed_from):
            mark, signature = checkpoints[cid]
            if signature is None or not chain.checkpoint_signature_ok(key, cid, mark, signature):
                return bad(cid, f"checkpoint at entry {cid} has no valid signature", 0)
    if anchor is not None:
        start = None  # the anchor may lie in a trusted prefix
        if marks.setdefault(anchor[0], anchor[1]) != anchor[1]:
            return bad(anchor[0], f"checkpoint at entry {anchor[0]} differs from the anchor", 0)
        if anchor[0] <= base[0] and anchor[0] not in checkpoints:
            return bad(
                anchor[0],
                f"the anchor (entry {anchor[0]}) lies in the archived prefix and no checkpoint "
                "there confirms it: verify it with `aclaudit log verify --archive DIR`",
                0,
            )

    verifier = chain.ChainVerifier(marks, start or base)
    failed = await feed(maker, verifier, head.last_id)
    if failed is not None:
        return bad(failed[0], failed[1], min(verifier.checked, failed[0] - 1))
    if not verifier.finish(head.last_id, head.last_hash):
        first_bad_id = verifier.first_bad_id or verifier.checked + 1
        return bad(first_bad_id, verifier.problem or "the chain is broken", verifier.checked)
    async with maker() as session:
        # Read after the head, so every checkpoint up to it is seen (each is committed with
        # the entries it marks); and a row appended meanwhile lies under the head read last.
        newest = await repository.newest_checkpoint_id(session, up_to=head.last_id)
        beyond = await repository.first_outside(session, below=1, above=head.last_id)
        now = await repository.find_head(session)
        unlogged = await repository.first_unlogged_read_alert(session, after=base[0])
        uncounted = await repository.first_unlogged_window_read(session, after=base[0])
    if head.last_id // checkpoint_every > newest // checkpoint_every:
        return bad(
            newest + 1,
            f"no checkpoint covers entries {newest + 1} to {head.last_id}, though one is "
            f"written in every transaction that passes a multiple of {checkpoint_every}: "
            "checkpoints were removed",
            verifier.checked,
        )
    if head_signed and not chain.head_signature_ok(
        key or b"", chain.ACCESS_LOG, head.last_id, head.last_hash, head.signature
    ):
        # The chain holds together up to the head, but the head is not one the service
        # signed: the entries after the newest checkpoint were rewritten (or removed).
        covered = max([c for c in checkpoints if c <= head.last_id], default=0)
        return bad(
            covered + 1,
            f"the head (entry {head.last_id}) has no valid signature: the entries after the "
            f"checkpoint at {covered} were rewritten or removed, or the head was moved",
            covered,
        )
    if beyond is not None and (now is None or beyond > now.last_id):
        return bad(
            beyond,
            f"entry {beyond} lies beyond the head ({head.last_id}): the head was moved back "
            "or entries were inserted outside the chain",
            verifier.checked,
        )
    # a read alert's entry, and a window's last counted read, must be reads the log shows
    for found, verb in ((unlogged, "records"), (uncounted, "counts")):
        if found is not None:
            alert_id, entry_id = found
            return bad(
                min(entry_id, head.last_id + 1),
                f"alert {alert_id} {verb} an out-of-audience read at entry {entry_id}, which "
                "the log does not show: entries were removed (the log was rolled back) or edited",
                verifier.checked,
            )
    resume_at = max((c for c in checkpoints if base[0] < c <= verifier.checked), default=None)
    result = ChainVerifyResult(
        chain=chain.ACCESS_LOG,
        ok=True,
        entries=verifier.checked,
        head_id=head.last_id,
        head=verifier.head if verifier.checked else None,
        head_signed=head_signed,
        resumed_from=start[0] if start else None,
        archived=archived,
    )
    resume_point = None if resume_at is None else (resume_at, checkpoints[resume_at][0])
    resumed = resume_point or (start if start else None)
    return LogVerified(result, len(checkpoints), resumed), recorded_through


async def feed(
    maker: async_sessionmaker[AsyncSession],
    verifier: chain.ChainVerifier,
    up_to: int,
    *,
    is_paced: bool = True,
) -> tuple[int, str] | None:
    """Feed the entries after `verifier.checked` up to `up_to` in pages (short read
    transactions, hashed in a thread, paced). A failure the verifier records stops it (its
    `first_bad_id`); one it cannot see is returned (entry id, problem): an entry whose
    data_subject rows differ from it, or one stored in a form the service never writes.
    Fewer entries than `up_to` stop it quietly: the caller says what is missing. Paced
    (`StepPacer`) unless not `is_paced` (a process that serves no checks)."""
    after = verifier.checked
    pacer = StepPacer() if is_paced else StepPacer(rest=0.0)
    while after < up_to:
        await pacer.pause()
        last = min(after + PAGE, up_to)
        async with maker() as session:
            # Read only what is stored as the service stores it: a value in another form could
            # read back the same yet escape the SQL filters, or not read.
            misstored = await repository.first_misstored(session, after + 1, last)
            readable = last if misstored is None else misstored - 1
            rows = await repository.entry_rows(session, after=after, up_to=readable)
            subjects = (
                await repository.subjects_between(session, rows[0]["id"], rows[-1]["id"])
                if rows
                else {}
            )
        failed = await asyncio.to_thread(_check_page, verifier, rows, subjects)
        if failed is not None or verifier.first_bad_id is not None:
            return failed
        if misstored is not None and verifier.checked == misstored - 1:
            return (
                misstored,
                f"entry {misstored} is stored in a form the service never writes (a column's "
                "type or format was changed in the database)",
            )
        if not rows:
            return None
        after = readable
    return None


async def _resume_point(
    session: AsyncSession,
    resume: tuple[int, str] | None,
    checkpoints: Mapping[int, tuple[str, str | None]],
    head: Any,
    archived_through: int,
) -> tuple[int, str] | None:
    """`resume` if it can still be trusted: its checkpoint and its entry carry its hash."""
    if resume is None or head is None or not archived_through < resume[0] <= head.last_id:
        return None
    mark = checkpoints.get(resume[0])
    if mark is None or mark[0] != resume[1]:
        return None
    if await repository.entry_hash(session, resume[0]) != resume[1]:
        return None
    return resume


def record_problem(record: AccessLogArchive, key: bytes | None, signed_from: int) -> str | None:
    """With a key, a record ending at or after entry `signed_from` must carry a valid
    signature: anyone who can write the database could otherwise insert a record claiming
    a deleted prefix was archived, or stretch the newest record over entries deleted after
    it. (Without a key, records are as trustworthy as the database, like checkpoints.)"""
    if key is None or record.last_id < signed_from:
        return None
    fields = {name: getattr(record, name) for name in chain.ARCHIVE_SIGNED}
    if chain.archive_signature_ok(key, fields, record.signature):
        return None
    return (
        f"the record of archived segment {record.segment} (entries {record.first_id} to "
        f"{record.last_id}) has no valid signature: it was forged or altered, and the entries "
        "it claims may have been deleted rather than archived"
    )


def archived_prefix(
    records: Sequence[AccessLogArchive],
    checkpoints: Mapping[int, tuple[str, str | None]],
    key: bytes | None,
    signed_from: int,
) -> tuple[ArchivedPrefix | None, tuple[int, str] | None]:
    """The archived prefix the records describe, or the first record that does not hold
    (entry id, problem): the records must run from entry 1 without a gap, each from the hash
    the one before ends with, each ending at a checkpoint with its last hash (checkpoints stay
    in the database when their entries are archived, signed when a key is set), each signed
    when a key is set (`record_problem`)."""
    if not records:
        return None, None
    prev_id, prev_hash = 0, chain.GENESIS
    for record in records:
        if record.first_id != prev_id + 1 or record.prev_hash != prev_hash:
            return None, (
                prev_id + 1,
                f"the archived segments do not run on after entry {prev_id}: a segment's "
                f"record ({record.segment}) was removed or altered",
            )
        forged = record_problem(record, key, signed_from)
        if forged is not None:
            return None, (record.first_id, forged)
        mark = checkpoints.get(record.last_id)
        if mark is None or mark[0] != record.last_hash:
            return None, (
                record.last_id,
                f"archived segment {record.segment} does not end at the checkpoint at entry "
                f"{record.last_id}: its record or the checkpoint was altered or removed",
            )
        prev_id, prev_hash = record.last_id, record.last_hash
    return ArchivedPrefix(
        segments=len(records),
        first_id=records[0].first_id,
        last_id=prev_id,
        entries=sum(r.entries for r in records),
        last_hash=prev_hash,
        newest_segment=records[-1].segment,
    ), None
