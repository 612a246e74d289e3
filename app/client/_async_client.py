"""``AsyncAclauditClient``: the asyncio client; the same contract as ``AclauditClient``."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

import httpx

from app.client import _base, _deadline
from app.client._client import Arg, resolve
from app.client._config import (
    DEFAULT_DEADLINE,
    DEFAULT_LIMITS,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    Retries,
)
from app.client._deadline import Deadline
from app.client._exceptions import AccessDenied
from app.client._models import (
    AccessLogEntry,
    AccessLogPage,
    AlertFeed,
    CheckResult,
    Exposure,
    Finding,
    FindingPage,
    Page,
    VerifyResult,
)

__all__ = ["AsyncAclauditClient", "AsyncGuard"]

P = ParamSpec("P")
R = TypeVar("R")
PageT = TypeVar("PageT", bound=Page)


class AsyncAclauditClient:
    """The asyncio twin of ``AclauditClient`` (see there for fail-closed, ``fail_open``,
    retries and ``deadline``, which here bounds each call under ``asyncio.timeout``)::

        async with AsyncAclauditClient(url, token=token) as client:
            async with client.guard(principal=p, dataset=d, purpose="support",
                                    data_subjects=[s]) as decision:
                rows = await store.read(...)
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        limits: httpx.Limits = DEFAULT_LIMITS,
        retries: Retries = DEFAULT_RETRIES,
        fail_open: bool = False,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        deadline: float = DEFAULT_DEADLINE,
    ) -> None:
        self.fail_open = fail_open
        self.retries = retries
        self.deadline = _deadline.validate(deadline)
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers=_base.default_headers(token, headers),
            timeout=timeout,
            limits=limits,
            transport=transport,
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncAclauditClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- checks ------------------------------------------------------------------------------

    async def check(
        self,
        principal: str,
        dataset: str,
        action: str = "read",
        *,
        purpose: str | None = None,
        data_subjects: Iterable[str] = (),
        request_id: str | None = None,
    ) -> CheckResult:
        """Ask whether ``principal`` may ``action`` ``dataset``; unavailability is a deny."""
        body = _base.check_body(principal, dataset, action, purpose, data_subjects, request_id)
        try:
            response = await self._post_check(_base.CHECK_PATH, _base.encode(body))
            return _base.parse_check(response, body)
        except _base.UNAVAILABLE_ERRORS as exc:
            return _base.unavailable(exc, body, fail_open=self.fail_open)

    async def check_batch(self, checks: Sequence[_base.CheckRequest]) -> list[CheckResult]:
        """Up to 1000 checks in one request, answered in order; each is logged."""
        bodies = [
            _base.check_body(
                c.principal, c.dataset, c.action, c.purpose, c.data_subjects, c.request_id
            )
            for c in checks
        ]
        try:
            response = await self._post_check(_base.BATCH_PATH, _base.encode({"checks": bodies}))
            return _base.parse_batch(response, bodies)
        except _base.UNAVAILABLE_ERRORS as exc:
            return [_base.unavailable(exc, b, fail_open=self.fail_open) for b in bodies]

    async def require(
        self,
        principal: str,
        dataset: str,
        action: str = "read",
        *,
        purpose: str | None = None,
        data_subjects: Iterable[str] = (),
        request_id: str | None = None,
    ) -> CheckResult:
        """``check``, raising ``AccessDenied`` unless allowed; returns the allow."""
        result = await self.check(
            principal,
            dataset,
            action,
            purpose=purpose,
            data_subjects=data_subjects,
            request_id=request_id,
        )
        if not result.allowed:
            raise AccessDenied(result) from result.error
        return result

    def guard(
        self,
        *,
        principal: Arg,
        dataset: Arg,
        action: Arg = "read",
        purpose: Arg = None,
        data_subjects: Arg = (),
        request_id: Arg = None,
    ) -> AsyncGuard:
        """``async with client.guard(...) as decision:`` or ``@client.guard(...)`` on an
        ``async def``: checks first and raises ``AccessDenied`` on deny."""
        return AsyncGuard(
            self,
            {
                "principal": principal,
                "dataset": dataset,
                "action": action,
                "purpose": purpose,
                "data_subjects": data_subjects,
                "request_id": request_id,
            },
        )

    async def _post_check(self, path: str, content: bytes) -> _base.Answer:
        deadline = Deadline.start(self.deadline)
        try:
            async with asyncio.timeout(self.deadline):
                return await self._post_check_attempts(path, content, deadline)
        except TimeoutError as exc:  # asyncio.timeout's: the whole call outlasted the deadline
            raise deadline.exceeded() from exc

    async def _post_check_attempts(
        self, path: str, content: bytes, deadline: Deadline
    ) -> _base.Answer:
        for attempt in range(self.retries.attempts):
            try:
                return await self._send(
                    "POST", path, deadline, content=content, headers=_base.JSON_CONTENT
                )
            except _base.NOT_SENT as exc:
                if attempt + 1 >= self.retries.attempts:
                    raise _base.translate(exc, deadline) from exc
                await self._sleep(self.retries.delay(attempt))
            except httpx.HTTPError as exc:
                raise _base.translate(exc, deadline) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send(
        self, method: str, path: str, deadline: Deadline, **kwargs: Any
    ) -> _base.Answer:
        timeout = deadline.cap(self._http.timeout)
        request = self._http.build_request(method, path, timeout=timeout, **kwargs)
        response = await self._http.send(request, stream=True)
        try:
            return _base.Answer.of(response, await _deadline.aread(response, deadline))
        finally:
            await response.aclose()

    # -- security staff ----------------------------------------------------------------------

    async def findings(
        self,
        *,
        status: str | None = None,
        severity: str | None = None,
        dataset: str | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[Finding]:
        params = {"status": status, "severity": severity, "dataset": dataset, "limit": page_size}
        async for page in self._pages("/v1/findings", params, FindingPage):
            for item in page.items:
                yield item

    async def finding(self, finding_id: int) -> Finding:
        return _base.parse(await self._get(f"/v1/findings/{finding_id}"), Finding)

    async def finding_reads(
        self, finding_id: int, *, page_size: int = 100
    ) -> AsyncIterator[AccessLogEntry]:
        path = f"/v1/findings/{finding_id}/reads"
        async for page in self._pages(path, {"limit": page_size}, AccessLogPage):
            for item in page.items:
                yield item

    async def exposure(
        self, dataset: str, *, limit: int = 100, cursor: str | None = None
    ) -> Exposure:
        params = _base.query({"limit": limit, "cursor": cursor})
        return _base.parse(await self._get(f"/v1/datasets/{dataset}/exposure", params), Exposure)

    async def access_log(
        self,
        *,
        principal: str | None = None,
        dataset: str | None = None,
        decision: str | None = None,
        out_of_audience: bool | None = None,
        data_subject: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[AccessLogEntry]:
        params = {
            "principal": principal,
            "dataset": dataset,
            "decision": decision,
            "out_of_audience": out_of_audience,
            "data_subject": data_subject,
            "since": since,
            "until": until,
            "limit": page_size,
        }
        async for page in self._pages("/v1/access-log", params, AccessLogPage):
            for item in page.items:
                yield item

    async def access_log_page(
        self,
        *,
        principal: str | None = None,
        dataset: str | None = None,
        decision: str | None = None,
        out_of_audience: bool | None = None,
        data_subject: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> AccessLogPage:
        """One page of the access log, newest first: ``next_cursor`` for the next, and on the
        last page ``archived_through``, the last id archived out of the database (if any)."""
        params = {
            "principal": principal,
            "dataset": dataset,
            "decision": decision,
            "out_of_audience": out_of_audience,
            "data_subject": data_subject,
            "since": since,
            "until": until,
            "limit": limit,
            "cursor": cursor,
        }
        response = await self._get("/v1/access-log", _base.query(params))
        return _base.parse(response, AccessLogPage)

    async def access_log_entry(self, entry_id: int) -> AccessLogEntry:
        return _base.parse(await self._get(f"/v1/access-log/{entry_id}"), AccessLogEntry)

    async def verify_access_log(self) -> VerifyResult:
        return _base.parse(await self._get("/v1/access-log/verify"), VerifyResult)

    async def alerts(self, *, after: int = 0, limit: int = 100) -> AlertFeed:
        params = _base.query({"after": after, "limit": limit})
        return _base.parse(await self._get("/v1/alerts", params), AlertFeed)

    async def follow_alerts(
        self, *, after: int = 0, interval: float = 5.0, limit: int = 100
    ) -> AsyncIterator[AlertFeed]:
        while True:
            feed = await self.alerts(after=after, limit=limit)
            after = feed.last_id
            if feed.items:
                yield feed
            if len(feed.items) < limit:
                await self._sleep(interval)

    async def _pages(
        self, path: str, params: Mapping[str, Any], page_type: type[PageT]
    ) -> AsyncIterator[PageT]:
        cursor: str | None = None
        while True:
            response = await self._get(path, _base.query({**params, "cursor": cursor}))
            page = _base.parse(response, page_type)
            yield page
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def _get(self, path: str, params: Mapping[str, str | int] | None = None) -> _base.Answer:
        deadline = Deadline.start(self.deadline)
        try:
            async with asyncio.timeout(self.deadline):
                return await self._get_attempts(path, params, deadline)
        except TimeoutError as exc:
            raise deadline.exceeded() from exc

    async def _get_attempts(
        self, path: str, params: Mapping[str, str | int] | None, deadline: Deadline
    ) -> _base.Answer:
        for attempt in range(self.retries.attempts):
            last = attempt + 1 >= self.retries.attempts
            try:
                response = await self._send("GET", path, deadline, params=params)
            except httpx.HTTPError as exc:
                if last or not isinstance(exc, httpx.TransportError):
                    raise _base.translate(exc, deadline) from exc
                await self._sleep(self.retries.delay(attempt))
                continue
            if response.status_code in _base.RETRYABLE_STATUS and not last:
                await self._sleep(self.retries.delay(attempt, _base.retry_after(response)))
                continue
            return response
        raise AssertionError("unreachable")  # pragma: no cover


class AsyncGuard:
    """``client.guard(...)`` of the async client."""

    def __init__(self, client: AsyncAclauditClient, args: dict[str, Arg]) -> None:
        self._client = client
        self._args = args

    async def __aenter__(self) -> CheckResult:
        if any(callable(v) for v in self._args.values()):
            raise TypeError("function arguments to guard() only work in the decorator form")
        return await self._client.require(**self._args)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def __call__(self, func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        if not inspect.iscoroutinefunction(func):
            raise TypeError("AsyncAclauditClient.guard decorates coroutine functions only")
        signature = inspect.signature(func)

        @functools.wraps(func)
        async def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            await self._client.require(**resolve(signature, self._args, args, kwargs))
            return await func(*args, **kwargs)

        return guarded
