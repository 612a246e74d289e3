"""Group commit: decide and record concurrent checks in one transaction, then answer them.

Each process runs one writer task. A check waits in ``submit`` until the transaction holding
its entry has committed; if that transaction fails, every check in it fails (the router turns
that into 503 deny). Decisions are taken inside the transaction, after the policy version is
read, so a check queued after a policy change's response sees that change.
"""

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.accesslog import chain, repository
from app.alerts import service as alerts_service
from app.alerts.schemas import AlertType
from app.alerts.service import AlertEvent
from app.auth.token_cache import TokenCache
from app.config import Settings
from app.db import begin_write
from app.policy.snapshot import PolicyCache

logger = logging.getLogger("aclaudit.accesslog")


@dataclass(frozen=True)
class CheckInput:
    principal: str
    dataset: str
    action: str
    purpose: str | None
    request_id: str | None
    data_subjects: tuple[str, ...]


@dataclass(frozen=True)
class Submission:
    checks: list[CheckInput]
    caller: str
    token_hash: str | None  # None only for in-process callers (the demo), never over HTTP


@dataclass(frozen=True)
class Recorded:
    """A decision that is committed to the access log."""

    entry: dict[str, Any]


class TokenRevoked(Exception):
    """The caller's token was revoked before its checks could be decided."""


class LogUnavailable(Exception):
    """The access log could not be written; the checks it held must be denied."""


class AccessLogWriter:
    def __init__(
        self,
        maker: async_sessionmaker[AsyncSession],
        policy: PolicyCache,
        tokens: TokenCache,
        settings: Settings,
    ) -> None:
        self._maker = maker
        self._policy = policy
        self._tokens = tokens
        self._max_batch = settings.max_group_commit
        self._checkpoint_every = settings.checkpoint_every
        key = settings.checkpoint_key
        self._checkpoint_key = key.get_secret_value().encode() if key else None
        self._queue: list[tuple[Submission, asyncio.Future[list[Recorded]]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.write_failures = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="access-log-writer")

    async def stop(self) -> None:
        """Finish every queued check (committing its entry), then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task

    async def submit(self, submission: Submission) -> list[Recorded]:
        if self._closing or self._task is None or self._task.done():
            raise LogUnavailable("the access-log writer is not running")
        future: asyncio.Future[list[Recorded]] = asyncio.get_running_loop().create_future()
        self._queue.append((submission, future))
        self._wake.set()
        return await asyncio.shield(future)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch = self._take_batch()
                try:
                    results = await self._commit([s for s, _ in batch])
                except Exception as exc:
                    self.write_failures += len(batch)
                    logger.error("access log write failed for %d submissions: %r", len(batch), exc)
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(LogUnavailable(str(exc)))
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
            if self._closing and not self._queue:
                return

    def _take_batch(self) -> list[tuple[Submission, asyncio.Future[list[Recorded]]]]:
        taken, count = 0, 0
        for submission, _ in self._queue:
            if taken and count + len(submission.checks) > self._max_batch:
                break
            taken += 1
            count += len(submission.checks)
        batch, self._queue = self._queue[:taken], self._queue[taken:]
        return batch

    async def _commit(self, submissions: list[Submission]) -> list[list[Recorded] | Exception]:
        async with self._maker() as session, session.begin():
            await begin_write(session)
            head = await repository.lock_head(session)
            snapshot = await self._policy.current(session)
            live = await self._tokens.revalidate(
                session, snapshot.version, {s.token_hash for s in submissions if s.token_hash}
            )
            now = time.time()
            at = datetime.fromtimestamp(now, UTC)
            last_id, last_hash = head.last_id, head.last_hash
            entries: list[dict[str, Any]] = []
            alerts: list[AlertEvent] = []
            subjects: list[dict[str, Any]] = []
            results: list[list[Recorded] | Exception] = []
            for submission in submissions:
                if submission.token_hash is not None and submission.token_hash not in live:
                    results.append(TokenRevoked("the token was revoked"))
                    continue
                recorded = []
                for check in submission.checks:
                    outcome = snapshot.decide(check.principal, check.dataset, check.action, now)
                    last_id += 1
                    reason = {
                        "code": outcome.code,
                        "grant_id": outcome.grant_id,
                        "via": list(outcome.via),
                    }
                    entry: dict[str, Any] = {
                        "id": last_id,
                        "decision_id": str(uuid.uuid4()),
                        "at": at,
                        "principal": check.principal,
                        "dataset": check.dataset,
                        "action": check.action,
                        "purpose": check.purpose,
                        "decision": "allow" if outcome.allowed else "deny",
                        "reason": reason,
                        "out_of_audience": outcome.out_of_audience,
                        "data_subjects": list(check.data_subjects),
                        "request_id": check.request_id,
                        "caller": submission.caller,
                        "policy_version": snapshot.version,
                    }
                    entry["prev_hash"] = last_hash
                    last_hash = entry["hash"] = chain.entry_hash(last_hash, entry)
                    entries.append(entry)
                    if outcome.out_of_audience:
                        alerts.append(_read_alert(entry, snapshot.sensitivities))
                    subjects.extend(
                        {"subject": s, "entry_id": last_id} for s in check.data_subjects
                    )
                    recorded.append(Recorded(entry))
                results.append(recorded)
            if entries:
                checkpoint = None
                if last_id // self._checkpoint_every > head.last_id // self._checkpoint_every:
                    checkpoint = self._checkpoint(last_id, last_hash, at)
                await repository.append(
                    session, entries, subjects, (last_id, last_hash), checkpoint
                )
                await alerts_service.emit(session, alerts, at)
        return results

    def _checkpoint(self, entry_id: int, head_hash: str, at: datetime) -> dict[str, Any]:
        signature = (
            chain.sign_checkpoint(self._checkpoint_key, entry_id, head_hash)
            if self._checkpoint_key
            else None
        )
        return {"entry_id": entry_id, "head_hash": head_hash, "at": at, "signature": signature}


READ_SEVERITY = {"restricted": "critical", "confidential": "high", "internal": "medium"}


def _read_alert(entry: dict[str, Any], sensitivities: dict[str, str]) -> AlertEvent:
    sensitivity = sensitivities.get(entry["dataset"], "internal")
    return AlertEvent(
        type=AlertType.read_out_of_audience,
        severity=READ_SEVERITY.get(sensitivity, "low"),
        summary=f"{entry['principal']} read {sensitivity} {entry['dataset']} from outside its "
        f"intended audience (grant {entry['reason']['grant_id']})",
        dataset=entry["dataset"],
        access_log_id=entry["id"],
    )
