"""Verifying the admin trail's and the alert feed's hash chains (see `app.chain`).

As the access log's: rows fetched in pages, hashed in a thread, paced, resumable after the
last row an earlier verify in this process checked (that row must still carry the hash it was
checked with). Each chain's head must be the last row, and signed once a checkpoint key is set.
"""

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import RowMapping, Table, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import chain
from app.accesslog.schemas import ChainVerifyResult
from app.alerts.models import Alert, AlertHead
from app.auth.models import TrailEntry, TrailHead
from app.fairness import StepPacer

PAGE = 500


@dataclass(frozen=True)
class Ledger:
    name: str
    rows: Table
    head: Table
    fields: tuple[str, ...]


LEDGERS = (
    Ledger(chain.ADMIN_TRAIL, TrailEntry.__table__, TrailHead.__table__, chain.TRAIL_FIELDS),  # type: ignore[arg-type]
    Ledger(chain.ALERTS, Alert.__table__, AlertHead.__table__, chain.ALERT_FIELDS),  # type: ignore[arg-type]
)


def _feed(verifier: chain.RecordVerifier, rows: Sequence[RowMapping]) -> None:
    for row in rows:
        if not verifier.feed(row):
            return


async def verify_ledger(
    maker: async_sessionmaker[AsyncSession],
    ledger: Ledger,
    key: bytes | None,
    resume: tuple[int, str] | None = None,
) -> tuple[ChainVerifyResult, tuple[int, str] | None]:
    """The chain's result, and where the next verify may resume (None: from the start)."""
    rows_t, head_t = ledger.rows, ledger.head
    async with maker() as session:
        head = (await session.execute(select(head_t).where(head_t.c.id == 1))).mappings().first()
        start = await _trusted(session, rows_t, resume, head)

    def bad(first_bad_id: int | None, problem: str, checked: int) -> ChainVerifyResult:
        return ChainVerifyResult(
            chain=ledger.name,
            ok=False,
            entries=checked,
            head_id=None if head is None else head["last_id"],
            head_signed=key is not None,
            first_bad_id=first_bad_id,
            problem=problem,
        )

    if head is None:
        return bad(None, f"the {ledger.name} head row is missing", 0), None
    head_id, head_hash = int(head["last_id"]), str(head["last_hash"])
    if (
        key is not None
        and head_id > 0
        and not chain.head_signature_ok(key, ledger.name, head_id, head_hash, head["signature"])
    ):
        return bad(
            None,
            f"the {ledger.name} head (row {head_id}) has no valid signature: rows were "
            "rewritten or removed, or the head was moved",
            0,
        ), None
    verifier = chain.RecordVerifier(ledger.fields, start or (0, chain.GENESIS))
    after = verifier.last_id if start else -(2**31)  # rows below 1 too: forged ones
    pacer = StepPacer()
    while True:
        await pacer.pause()
        async with maker() as session:
            query = (
                select(rows_t)
                .where(rows_t.c.id > after, rows_t.c.id <= head_id)
                .order_by(rows_t.c.id)
                .limit(PAGE)
            )
            rows = list((await session.execute(query)).mappings().all())
        if not rows:
            break
        await asyncio.to_thread(_feed, verifier, rows)
        if verifier.first_bad_id is not None:
            break
        after = verifier.last_id
    if not verifier.finish(head_id, head_hash):
        return bad(verifier.first_bad_id, verifier.problem or "", verifier.checked), None
    async with maker() as session:
        # Read after the head: a row appended meanwhile lies under the head read last.
        beyond = await session.scalar(select(func.min(rows_t.c.id)).where(rows_t.c.id > head_id))
        now = await session.scalar(select(head_t.c.last_id).where(head_t.c.id == 1))
    if beyond is not None and (now is None or beyond > now):
        return bad(
            int(beyond),
            f"row {beyond} lies beyond the {ledger.name} head ({head_id}): the head was moved "
            "back or rows were inserted outside the chain",
            verifier.checked,
        ), None
    result = ChainVerifyResult(
        chain=ledger.name,
        ok=True,
        entries=verifier.checked,
        head_id=head_id,
        head=head_hash if head_id else None,
        head_signed=key is not None and head_id > 0,
        resumed_from=None if start is None else start[0],
    )
    return result, (verifier.last_id, verifier.head)


async def _trusted(
    session: AsyncSession,
    rows: Table,
    resume: tuple[int, str] | None,
    head: RowMapping | None,
) -> tuple[int, str] | None:
    """`resume` if its row still carries its hash and the head is not behind it."""
    if resume is None or resume[0] == 0 or head is None or resume[0] > head["last_id"]:
        return None
    found = await session.scalar(select(rows.c.hash).where(rows.c.id == resume[0]))
    return resume if found == resume[1] else None
