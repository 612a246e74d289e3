"""Group commit for the IdP's writes: those that queue in one worker share a transaction.

An IdP pushes a company's users, groups and teams several at a time (Okta: 4 connections).

Group PATCHes (`GroupCommit(policy=True)`): each push is a policy change, and the findings above
a team (hundreds, on the grants of its org, department and `all-employees`) are re-analysed and
rewritten by each. Queued pushes made one change re-analyse and write them once: their
membership changes are merged (`provisioning.Deferred`) and run through the change pipeline once.

Creates of users and groups (`GroupCommit(policy=False)`): a new user, or a group without
members, changes no policy; each alone paid a transaction, a commit (SQLite: an fsync) and a
lock of the admin trail's head. Queued creates share them, and the `inactive` holds of their
new users are looked up once, after the batch's creates (`provisioning.settle_activations`). A
create that does change the policy (a user whose name carries such a hold, one created inactive,
a group with members) takes the policy lock inside the batch, as it would alone.

Either way the batch's requests run one after another, each in a savepoint (one that fails is
rolled back alone and answers its own error, say a 409 for a taken displayName; a user create,
which writes nothing before it can fail, needs none and takes none); every one still
gets its own admin trail entry, in the same transaction as its change, and no response is sent
before the batch's commit: a failed commit answers each request 503, and nothing of any is kept.

The batch runs in a task of its own, so a request whose client goes away neither stops the
others nor leaves the session half-used. A batch takes only requests of one caller (the trail
and the holds name it), and at most `MAX_BATCH`.
"""

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request
from starlette.responses import Response

from app.auth.trail import RECORDED
from app.db import begin_write, take_policy_turn
from app.errors import ServiceUnavailable
from app.identity import provisioning

logger = logging.getLogger("aclaudit.group_commit")

MAX_BATCH = 32  # requests per transaction (each up to the SCIM body limit)
# Once its turn has come, a batch waits for more requests until none has come for
# QUIET_SECONDS (at most GATHER_SECONDS), or as many as recent batches took are queued: the
# requests an IdP sends as soon as the last batch answered it come a few milliseconds apart
# (each authenticated first), and without the wait a worker's batches split in two halves that
# alternate (measured: 2.0 pushes a commit with 4 in flight); once as many are queued as the
# largest of the RECENT last batches took (the IdP's parallel requests), more waiting only
# idles the worker.
QUIET_SECONDS = 0.006
GATHER_SECONDS = 0.025
RECENT = 8

Work = Callable[[AsyncSession], Awaitable[Any]]
Hook = Callable[[Request, Response, AsyncSession], Awaitable[None]]


@dataclass
class _Push:
    actor: str
    request: Request
    response: Response
    work: Work
    savepoint: bool
    done: "asyncio.Future[Any]" = field(default_factory=lambda: asyncio.Future())


class GroupCommit:
    """This worker's queue of IdP writes of one kind, drained batch by batch: policy changes
    (`policy`: group pushes, which take the policy turn and merge their membership changes)
    or creates (which take the policy lock only if one of them changes the policy)."""

    def __init__(
        self,
        maker: async_sessionmaker[AsyncSession],
        hook: Hook,
        observe: Callable[[int], None] = lambda pushes: None,
        *,
        policy: bool,
    ) -> None:
        self._maker = maker
        self._hook = hook
        self._observe = observe  # each batch's size, once committed
        self._is_policy = policy
        self._queue: list[_Push] = []
        self._draining: asyncio.Task[None] | None = None
        self._sizes: collections.deque[int] = collections.deque(maxlen=RECENT)  # last batches'

    @property
    def queued(self) -> int:
        """Pushes waiting for a batch."""
        return len(self._queue)

    async def run(
        self,
        actor: str,
        request: Request,
        response: Response,
        work: Work,
        *,
        savepoint: bool = True,
    ) -> Any:
        """`work(session)`'s result once its batch has committed (its error, if it raised).
        `savepoint` False: `work` has written nothing when it raises (it takes a savepoint of
        its own where it must), so it runs without one (two round trips less)."""
        push = _Push(actor, request, response, work, savepoint)
        self._queue.append(push)
        if self._draining is None or self._draining.done():
            self._draining = asyncio.create_task(self._drain())
        return await asyncio.shield(push.done)

    async def _drain(self) -> None:
        while self._queue:
            await self._one_batch()

    async def _one_batch(self) -> None:
        taken: list[_Push] = []
        try:
            await self._commit(taken)
        finally:  # (cancelled, say at shutdown: no push waits for ever)
            for push in taken:
                if not push.done.done():
                    push.done.set_exception(ServiceUnavailable("the server is stopping; retry"))

    async def _commit(self, taken: list[_Push]) -> None:
        """One batch: `taken` is filled with its pushes once this worker's turn has come."""
        outcomes: list[tuple[_Push, BaseException | None, Any]] = []
        try:
            async with self._maker() as session:
                await begin_write(session)  # SQLite: this worker's writers take turns here
                if self._is_policy:
                    await take_policy_turn(session)  # PostgreSQL: its policy changes, here
                # Requests that queued while this batch waited for its turn go in it.
                await self._gather()
                taken.extend(self._take())
                deferred = None
                if self._is_policy:
                    deferred = provisioning.defer(session)
                else:
                    provisioning.defer_activations(session)
                for push in taken:
                    outcomes.append(await self._apply(session, deferred, push))
                if deferred is not None:
                    await provisioning.settle_deferred(session, deferred)
                else:
                    await provisioning.settle_activations(session)
                # the trail head last, after the version lock, as every other change takes them
                for push, error, _ in outcomes:
                    if error is None:
                        await self._hook(push.request, push.response, session)
                await session.commit()
            self._sizes.append(len(taken))
            self._observe(len(taken))
        except Exception:
            logger.exception("a batch of SCIM pushes could not commit")
            failure = ServiceUnavailable(
                "the change could not be committed; nothing of it was kept, retry shortly"
            )
            # (failed before taking any, the database unreachable: the first batch is answered,
            # so an outage never spins)
            for push in taken or self._take():
                push.request.scope.get("state", {}).pop(RECORDED, None)  # the 503 is trailed
                if not push.done.done():
                    push.done.set_exception(failure)
            return
        for push, error, value in outcomes:
            if push.done.done():
                continue
            if error is not None:
                push.done.set_exception(error)
            else:
                push.done.set_result(value)

    async def _gather(self) -> None:
        loop = asyncio.get_running_loop()
        started = last = loop.time()
        queued = len(self._queue)
        enough = min(MAX_BATCH, max(self._sizes, default=1))
        while queued < enough and loop.time() - last < QUIET_SECONDS:
            if loop.time() - started >= GATHER_SECONDS:
                return
            await asyncio.sleep(0.001)
            if len(self._queue) > queued:
                queued, last = len(self._queue), loop.time()

    def _take(self) -> list[_Push]:
        actor = self._queue[0].actor
        taken = [push for push in self._queue if push.actor == actor][:MAX_BATCH]
        chosen = {id(push) for push in taken}
        self._queue = [push for push in self._queue if id(push) not in chosen]
        return taken

    async def _apply(
        self, session: AsyncSession, deferred: provisioning.Deferred | None, push: _Push
    ) -> tuple[_Push, BaseException | None, Any]:
        """One request in a savepoint, rolled back alone if it raises (its trail entry is
        written after the batch's policy change: the version lock first, then the trail's head,
        in the order every change takes them)."""
        if not push.savepoint:
            try:
                return push, None, await push.work(session)
            except Exception as exc:
                return push, exc, None
        mark = None if deferred is None else deferred.mark()
        savepoint = await session.begin_nested()
        try:
            value = await push.work(session)
        except Exception as exc:
            await savepoint.rollback()
            if deferred is not None and mark is not None:
                deferred.restore(mark)
            return push, exc, None
        await savepoint.commit()
        return push, None, value
