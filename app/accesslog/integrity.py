"""Verifying every hash chain (access log, admin trail, alert feed) and alerting on failure.

One :class:`Integrity` per process (``app.state.integrity``; the CLI makes its own) runs one
verify at a time, callers in turn (`app.fairness.OneAtATime`: a caller's second concurrent
verify is `Busy`, 429; the sweeper's waits its turn like a caller's), keeps where each chain's
last verify ended so the next one reads only what was appended since (`full` reads
everything), and decides which failures become ``log.integrity_failed`` alerts.

A failure drops every resume point, and until a verify reading every row passes, each verify in
this process reads every row: a resumed verify never answers ok past a failure it has seen.

The alert decision trusts nothing in the database, where a tamperer could plant rows: a failure
is alerted the first time this process sees it (by chain and first bad row), and again every
`integrity_realert_seconds` while it persists, so a poller learns of it even if an alert was
removed (a removed alert also breaks the alert feed's chain, itself a failure). A failure counts
as alerted only once its alert is committed: if the write fails, the next verify tries again.

A row that cannot be read at all (a value the service never writes, a dropped table) is
reported as tampering with that chain, never raised: verify answers, the sweeper alerts.
"""

import logging
import time
from collections.abc import Awaitable, Callable, Hashable

from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import chain
from app.accesslog.ledgers import LEDGERS, Ledger, verify_ledger
from app.accesslog.range_verifier import RangeVerified, verify_range
from app.accesslog.schemas import ChainVerifyResult, VerifyResult
from app.accesslog.verifier import verify_log
from app.alerts import service as alerts_service
from app.alerts.schemas import AlertType
from app.alerts.service import AlertEvent
from app.config import Settings
from app.db import begin_write
from app.fairness import OneAtATime

logger = logging.getLogger("aclaudit.integrity")

SWEEPER = "sweeper"  # the sweeper's place among the callers

# SQLite names a missing table or column in an OperationalError, like an outage.
_SCHEMA_GONE = ("no such table", "no such column")


def is_outage(exc: Exception) -> bool:
    """The database could not be asked (answered 503 / retried), as opposed to a row or table
    that could not be read (tampering)."""
    if isinstance(exc, OperationalError):
        return not any(text in str(exc.orig) for text in _SCHEMA_GONE)
    return isinstance(
        exc, InterfaceError | DisconnectionError | PoolTimeout | OSError | TimeoutError
    )


def _unreadable(name: str, exc: Exception) -> ChainVerifyResult:
    """The failure naming a row of chain `name` that could not be read (not an outage)."""
    logger.warning("%s: a row could not be read: %r", name, exc)
    return ChainVerifyResult(
        chain=name,
        ok=False,
        entries=0,
        problem=f"a {name} row could not be read ({type(exc).__name__}: {exc}): it is "
        "stored in a form the service never writes, or a table or column was altered",
    )


async def _readable(
    name: str, work: Awaitable[ChainVerifyResult]
) -> tuple[ChainVerifyResult, bool]:
    """`work`'s result, or a failure naming what could not be read; and whether it ran."""
    try:
        return await work, True
    except Exception as exc:
        if is_outage(exc):
            raise
        return _unreadable(name, exc), False


class Integrity:
    def __init__(
        self,
        maker: async_sessionmaker[AsyncSession],
        settings: Settings,
        report: Callable[[str, bool], None] | None = None,
    ) -> None:
        """`report(chain, ok)` is told each chain's result (the metrics' gauge)."""
        self._maker = maker
        self._settings = settings
        self._report = report
        self.turns = OneAtATime("verify")
        self._resume: dict[str, tuple[int, str]] = {}
        self._has_failed = False  # since the last verify that read every row and passed
        self._alerted: dict[tuple[str, int | None], float] = {}  # failure -> monotonic time
        self._checkpoints = 0  # the running verify's

    @property
    def busy(self) -> bool:
        """A caller's verify is running or waiting in this process (the sweeper's aside)."""
        return bool(self.turns.callers - {SWEEPER})

    async def verify(
        self,
        *,
        caller: Hashable,
        anchor: tuple[int, str] | None = None,
        full: bool = False,
        alert: bool = True,
        is_patient: bool = False,
    ) -> VerifyResult:
        """Verify every chain (resumed unless `full`); alert on failure (see the module).

        Callers take turns (`Busy` for a caller's second concurrent verify, or when too many
        wait); the sweeper is `is_patient`. A failure against the caller's `anchor` alone is
        the caller's answer, not an alert: anyone who may verify could otherwise raise false
        critical alerts.
        """
        async with self.turns.turn(caller, is_patient=is_patient):
            result = await self._verify(anchor, full or self._has_failed)
            alerted = result
            if not result.ok and anchor is not None:
                alerted = await self._verify(None, full or self._has_failed)
            self._remember(alerted)
            if alert and not alerted.ok:
                await self._alert(alerted)
            return result

    async def verify_range(
        self, *, caller: Hashable, first: int | None, last: int, is_paced: bool = True
    ) -> RangeVerified:
        """Verify the access log's entries `first..last` and their link to the head
        (`app.accesslog.range_verifier`), taking turns with the verifies; a failure is
        remembered (every later verify reads every row) and alerted like a full verify's.
        Unless `is_paced` (a process that serves no checks: the CLI), no rest between pages."""
        async with self.turns.turn(caller):
            try:
                verified = await verify_range(
                    self._maker, self._settings, first, last, is_paced=is_paced
                )
            except Exception as exc:
                if is_outage(exc):
                    raise
                unread = _unreadable(chain.ACCESS_LOG, exc)
                verified = RangeVerified(unread, 0, 0, self._settings.checkpoint_key is not None)
            if not verified.result.ok:
                failed = _as_verify(verified.result, self._settings.checkpoint_key_bytes)
                self._remember(failed)
                await self._alert(failed)
            return verified

    def _remember(self, result: VerifyResult) -> None:
        if not result.ok:
            self._resume.clear()
            self._has_failed = True
        elif all(c.resumed_from is None for c in result.chains):
            self._has_failed = False
        if self._report is not None:
            for verified in result.chains:
                self._report(verified.chain, verified.ok)

    async def _verify(self, anchor: tuple[int, str] | None, full: bool) -> VerifyResult:
        key = self._settings.checkpoint_key_bytes
        resume = {} if full else dict(self._resume)
        self._checkpoints = 0
        log, _ = await _readable(chain.ACCESS_LOG, self._log(anchor, resume.get(chain.ACCESS_LOG)))
        chains = [log]
        for ledger in LEDGERS:
            ledger_run = self._ledger(ledger, key, resume.get(ledger.name))
            chains.append((await _readable(ledger.name, ledger_run))[0])
        failed = next((c for c in chains if not c.ok), None)
        problem = None
        if failed is not None:
            problem = failed.problem if failed is log else f"{failed.chain}: {failed.problem}"
        return VerifyResult(
            ok=failed is None,
            entries=log.entries,
            head=log.head,
            checkpoints=self._checkpoints,
            signed_checkpoints=key is not None,
            first_bad_id=log.first_bad_id,
            problem=problem,
            resumed_from=log.resumed_from,
            archived=log.archived,
            chains=chains,
        )

    async def _log(
        self, anchor: tuple[int, str] | None, resume: tuple[int, str] | None
    ) -> ChainVerifyResult:
        verified = await verify_log(self._maker, self._settings, anchor=anchor, resume=resume)
        self._checkpoints = verified.checkpoints
        if verified.resume is not None and anchor is None:
            self._resume[chain.ACCESS_LOG] = verified.resume
        return verified.result

    async def _ledger(
        self, ledger: Ledger, key: bytes | None, resume: tuple[int, str] | None
    ) -> ChainVerifyResult:
        result, point = await verify_ledger(self._maker, ledger, key, resume)
        if point is not None:
            self._resume[ledger.name] = point
        return result

    async def _alert(self, result: VerifyResult) -> None:
        now = time.monotonic()
        due: list[tuple[str, int | None]] = []
        events = []
        for failed in (c for c in result.chains if not c.ok):
            key = (failed.chain, failed.first_bad_id)
            last = self._alerted.get(key)
            if last is not None and now - last < self._settings.integrity_realert_seconds:
                continue
            due.append(key)
            where = "" if failed.first_bad_id is None else f" at row {failed.first_bad_id}"
            if failed.chain == chain.ACCESS_LOG:
                where = f" at entry {failed.first_bad_id}"
            events.append(
                AlertEvent(
                    type=AlertType.log_integrity_failed,
                    severity="critical",
                    summary=f"{failed.chain} integrity check failed{where}: {failed.problem}",
                    access_log_id=failed.first_bad_id if failed.chain == chain.ACCESS_LOG else None,
                )
            )
        if events:
            async with self._maker() as session, session.begin():
                await begin_write(session)
                await alerts_service.emit(session, events)
            # only now: an alert whose write failed (a held lock, an outage) is due next time
            self._alerted.update(dict.fromkeys(due, now))


def _as_verify(log: ChainVerifyResult, key: bytes | None) -> VerifyResult:
    return VerifyResult(
        ok=log.ok,
        entries=log.entries,
        head=log.head,
        signed_checkpoints=key is not None,
        first_bad_id=log.first_bad_id,
        problem=log.problem,
        archived=log.archived,
        chains=[log],
    )
