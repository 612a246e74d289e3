"""Browsing and verifying the access log. Nothing here edits it."""

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.accesslog import chain, repository
from app.accesslog.models import AccessLogEntry
from app.accesslog.schemas import AccessLogEntryRead, VerifyResult
from app.alerts import service as alerts_service
from app.alerts.schemas import AlertType
from app.alerts.service import AlertEvent
from app.config import Settings
from app.db import begin_write
from app.errors import NotFound

VERIFY_CHUNK = 5000


async def get_entry(session: AsyncSession, entry_id: int) -> AccessLogEntryRead:
    entry = await repository.get_entry(session, entry_id)
    if entry is None:
        raise NotFound(f"access-log entry {entry_id} does not exist")
    return AccessLogEntryRead.model_validate(entry)


async def list_entries(
    session: AsyncSession,
    *,
    principal: str | None,
    dataset: str | None,
    decision: str | None,
    out_of_audience: bool | None,
    data_subject: str | None,
    since: datetime | None,
    until: datetime | None,
    before_id: int | None,
    limit: int,
) -> tuple[list[AccessLogEntryRead], str | None]:
    rows = await repository.list_entries(
        session,
        principal=principal,
        dataset=dataset,
        decision=decision,
        out_of_audience=out_of_audience,
        data_subject=data_subject,
        since=since,
        until=until,
        before_id=before_id,
        limit=limit + 1,
    )
    page = [AccessLogEntryRead.model_validate(r) for r in rows[:limit]]
    return page, (str(page[-1].id) if len(rows) > limit else None)


def _as_chained(entry: AccessLogEntry) -> dict[str, Any]:
    fields = (*chain.CHAINED_FIELDS, "prev_hash", "hash")
    return {name: getattr(entry, name) for name in fields}


async def verify(
    maker: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    anchor: tuple[int, str] | None = None,
) -> VerifyResult:
    """Recompute the chain; compare with the head, every checkpoint and an optional anchor.

    With a checkpoint key, every checkpoint at or after entry `checkpoint_key_since` must be
    validly signed (those before it were written before the key was set; each still has to
    match the chain, and a signed checkpoint after them covers every entry they do). The log
    stores write a checkpoint in every transaction that passes a multiple of `checkpoint_every`,
    so the newest checkpoint must be at or past the last multiple up to the head: deleting the
    checkpoints after an edited (and re-chained) entry is caught, until the service writes the
    next one (only anchors copied out of the database catch a rewrite after that).

    The head is read first and entries up to it are streamed in short transactions, so
    concurrent writers are not blocked and entries appended meanwhile are not half-seen. Rows
    outside the chain (ids below 1, or beyond the head once it is read again) fail too: the API
    would serve them as entries.
    """
    checkpoint_key = settings.checkpoint_key_bytes
    checkpoint_every = settings.checkpoint_every
    signed_from = settings.checkpoint_key_since
    async with maker() as session:
        # Checkpoints first: one is committed with the entries it marks, so every checkpoint
        # read here is at or below the head read next, even under READ COMMITTED with writers
        # appending in between. A checkpoint beyond the head then means a truncated log.
        checkpoints = {c.entry_id: c for c in await repository.list_checkpoints(session)}
        head = await repository.find_head(session)
        low = await repository.first_outside(session, below=1)

    def bad(first_bad_id: int, problem: str, checked: int) -> VerifyResult:
        return VerifyResult(
            ok=False,
            entries=checked,
            first_bad_id=first_bad_id,
            problem=problem,
            checkpoints=len(checkpoints),
            signed_checkpoints=checkpoint_key is not None,
        )

    if head is None:
        return bad(1, "the access log's head row is missing", 0)
    if low is not None:
        return bad(low, f"entry {low} lies outside the chain, which starts at entry 1", 0)
    expected_marks = {cid: c.head_hash for cid, c in checkpoints.items()}
    if anchor is not None:
        expected_marks.setdefault(anchor[0], anchor[1])
    if checkpoint_key is not None:
        for cid in sorted(c for c in checkpoints if c >= signed_from):
            c = checkpoints[cid]
            if c.signature is None or not chain.checkpoint_signature_ok(
                checkpoint_key, cid, c.head_hash, c.signature
            ):
                return bad(cid, f"checkpoint at entry {cid} has no valid signature", 0)
    if anchor is not None and expected_marks[anchor[0]] != anchor[1]:
        return bad(anchor[0], f"checkpoint at entry {anchor[0]} differs from the anchor", 0)

    verifier = chain.ChainVerifier(expected_marks)
    after = 0
    while after < head.last_id:
        last = min(after + VERIFY_CHUNK, head.last_id)
        async with maker() as session:
            # Read through the ORM only what is stored as the service stores it: a value in
            # another form could read back the same yet escape the SQL filters, or not read.
            misstored = await repository.first_misstored(session, after + 1, last)
            readable = last if misstored is None else misstored - 1
            rows = await repository.entries_after(
                session, after=after, up_to=readable, limit=VERIFY_CHUNK
            )
            subjects = (
                await repository.subjects_between(session, rows[0].id, rows[-1].id) if rows else {}
            )
        for entry in rows:
            if not verifier.feed(_as_chained(entry)):
                break
            if subjects.get(entry.id, set()) != set(entry.data_subjects or ()):
                # the entry is intact, but ?data_subject= would not find it (or find it wrongly)
                return bad(
                    entry.id,
                    f"the data_subject index of entry {entry.id} differs from the entry",
                    verifier.checked - 1,
                )
        if verifier.first_bad_id is not None:
            break
        if misstored is not None and verifier.checked == misstored - 1:
            return bad(
                misstored,
                f"entry {misstored} is stored in a form the service never writes (a column's "
                "type or format was changed in the database)",
                verifier.checked,
            )
        if not rows:
            break  # nothing left up to the head: `finish` says what is missing
        after = readable
    if not verifier.finish(head.last_id, head.last_hash):
        first_bad_id = verifier.first_bad_id or verifier.checked + 1
        return bad(first_bad_id, verifier.problem or "the chain is broken", verifier.checked)
    async with maker() as session:
        # Read after the head, so every checkpoint up to it is seen (each is committed with
        # the entries it marks); and a row appended meanwhile lies under the head read last.
        newest = await repository.newest_checkpoint_id(session, up_to=head.last_id)
        beyond = await repository.first_outside(session, below=1, above=head.last_id)
        now = await repository.find_head(session)
    if head.last_id // checkpoint_every > newest // checkpoint_every:
        return bad(
            newest + 1,
            f"no checkpoint covers entries {newest + 1} to {head.last_id}, though one is "
            f"written in every transaction that passes a multiple of {checkpoint_every}: "
            "checkpoints were removed",
            verifier.checked,
        )
    if beyond is not None and (now is None or beyond > now.last_id):
        return bad(
            beyond,
            f"entry {beyond} lies beyond the head ({head.last_id}): the head was moved back "
            "or entries were inserted outside the chain",
            verifier.checked,
        )
    return VerifyResult(
        ok=True,
        entries=verifier.checked,
        head=verifier.head if verifier.checked else None,
        checkpoints=len(checkpoints),
        signed_checkpoints=checkpoint_key is not None,
    )


async def verify_and_alert(
    maker: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    anchor: tuple[int, str] | None = None,
    once: bool = False,
) -> VerifyResult:
    """Verify; a broken chain also becomes a ``log.integrity_failed`` alert.

    With ``once`` (the periodic check) a failure already alerted for the same first bad entry
    is not alerted again. A failure against the caller's `anchor` alone is the caller's answer,
    not an alert: anyone who may verify could otherwise raise false critical alerts, and with
    them hold back the real one for that entry.
    """
    result = await verify(maker, settings, anchor=anchor)
    alerted = result
    if not result.ok and anchor is not None:
        alerted = await verify(maker, settings)
    if not alerted.ok:
        async with maker() as session, session.begin():
            await begin_write(session)
            event = AlertEvent(
                type=AlertType.log_integrity_failed,
                severity="critical",
                summary=f"access log integrity check failed at entry {alerted.first_bad_id}: "
                f"{alerted.problem}",
                access_log_id=alerted.first_bad_id,
            )
            if once:
                await alerts_service.emit_once(session, event)
            else:
                await alerts_service.emit(session, [event])
    return result
