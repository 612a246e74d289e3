"""``AclauditClient``: the synchronous client."""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

import httpx

from app.client import _base, _deadline
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

__all__ = ["AclauditClient", "Guard"]

P = ParamSpec("P")
R = TypeVar("R")
PageT = TypeVar("PageT", bound=Page)
# A guard argument: the value itself or, for the decorator form, a function of the decorated
# call's arguments (by name, defaults applied), e.g. ``principal=lambda a: a["user"]``.
Arg = Any


class AclauditClient:
    """Ask aclaudit before every read; read findings, exposure, the access log and alerts::

        client = AclauditClient("http://aclaudit:8000", token=os.environ["ACLAUDIT_TOKEN"])
        with client.guard(principal="service:trainer", dataset="employee_activity.keystrokes",
                          purpose="model-training", data_subjects=["user:bob"]):
            rows = store.read(...)          # only reached on a recorded allow

    Timeouts default to ``DEFAULT_TIMEOUT`` (connect 1 s, read 2 s, write 2 s, pool 1 s), each
    bounding one socket operation; ``deadline`` (``DEFAULT_DEADLINE``, 5 s) bounds a whole call:
    retries, the request and the entire answer, however slowly it trickles in. Past either, a
    check is a deny and a security-staff read raises ``TimeoutException``. With a custom
    ``transport`` that is not an ``httpx.HTTPTransport`` only the answer's body is read against
    the deadline (each phase's timeout is capped at the time left): a trickled status line and
    headers can outlast it.

    **Fail closed.** If aclaudit cannot be reached, times out, answers 5xx or answers something
    malformed, ``check()`` returns a deny (``reason.code == "unavailable"``, ``recorded`` False,
    the cause in ``error``) and ``guard`` raises ``AccessDenied``. ``fail_open=True`` turns those
    failures into *unrecorded allows* instead: **dangerous** — reads then happen that aclaudit
    never decided and never logged. Only for data that may be read without a check anyway.

    4xx answers (bad token, missing scope, invalid principal) are configuration or programming
    errors, not decisions: they raise ``APIError`` subclasses whatever ``fail_open`` says.

    Retries (see ``Retries``): a check only when the connection could not be made (not sent,
    so not logged); security-staff GETs also on timeouts and 502/503/504.

    One client holds one connection pool: create it once and share it (it is thread-safe), and
    ``close()`` it (or use ``with``) at shutdown.
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
        transport: httpx.BaseTransport | None = None,
        deadline: float = DEFAULT_DEADLINE,
    ) -> None:
        self.fail_open = fail_open
        self.retries = retries
        self.deadline = _deadline.validate(deadline)
        self._sleep: Callable[[float], None] = time.sleep
        self._http = httpx.Client(
            base_url=base_url,
            headers=_base.default_headers(token, headers),
            timeout=timeout,
            limits=limits,
            transport=transport,
            follow_redirects=False,
        )
        _deadline.bound(self._http)

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AclauditClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- checks ------------------------------------------------------------------------------

    def check(
        self,
        principal: str,
        dataset: str,
        action: str = "read",
        *,
        purpose: str | None = None,
        data_subjects: Iterable[str] = (),
        request_id: str | None = None,
    ) -> CheckResult:
        """Ask whether ``principal`` may ``action`` ``dataset``; never raises for unavailability
        (that is a deny, or with ``fail_open`` an unrecorded allow)."""
        body = _base.check_body(principal, dataset, action, purpose, data_subjects, request_id)
        try:
            response = self._post_check(_base.CHECK_PATH, _base.encode(body))
            return _base.parse_check(response, body)
        except _base.UNAVAILABLE_ERRORS as exc:
            return _base.unavailable(exc, body, fail_open=self.fail_open)

    def check_batch(self, checks: Sequence[_base.CheckRequest]) -> list[CheckResult]:
        """Up to 1000 checks in one request, answered in order; each is logged. If aclaudit is
        unavailable, every answer is a deny (or, with ``fail_open``, an unrecorded allow)."""
        bodies = [
            _base.check_body(
                c.principal, c.dataset, c.action, c.purpose, c.data_subjects, c.request_id
            )
            for c in checks
        ]
        try:
            response = self._post_check(_base.BATCH_PATH, _base.encode({"checks": bodies}))
            return _base.parse_batch(response, bodies)
        except _base.UNAVAILABLE_ERRORS as exc:
            return [_base.unavailable(exc, b, fail_open=self.fail_open) for b in bodies]

    def require(
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
        result = self.check(
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
    ) -> Guard:
        """A context manager (``with client.guard(...) as decision:``) or decorator
        (``@client.guard(...)``) that checks before the read and raises ``AccessDenied`` on deny.
        In the decorator form each argument may be a function of the call's arguments."""
        return Guard(
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

    def _post_check(self, path: str, content: bytes) -> _base.Answer:
        # A check is logged by aclaudit: retry only when the connection was never made.
        deadline = Deadline.start(self.deadline)
        with _deadline.active(deadline):
            for attempt in range(self.retries.attempts):
                try:
                    return self._send(
                        "POST", path, deadline, content=content, headers=_base.JSON_CONTENT
                    )
                except _base.NOT_SENT as exc:
                    if attempt + 1 >= self.retries.attempts:
                        raise _base.translate(exc, deadline) from exc
                    self._sleep(min(self.retries.delay(attempt), deadline.check()))
                except httpx.HTTPError as exc:
                    raise _base.translate(exc, deadline) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(self, method: str, path: str, deadline: Deadline, **kwargs: Any) -> _base.Answer:
        """One request, its answer read whole within ``deadline`` (see ``_deadline``)."""
        timeout = deadline.cap(self._http.timeout)
        request = self._http.build_request(method, path, timeout=timeout, **kwargs)
        response = self._http.send(request, stream=True)
        try:
            return _base.Answer.of(response, _deadline.read(response, deadline))
        finally:
            response.close()

    # -- security staff (scopes audit:read, alerts:read) --------------------------------------

    def findings(
        self,
        *,
        status: str | None = None,
        severity: str | None = None,
        dataset: str | None = None,
        page_size: int = 100,
    ) -> Iterator[Finding]:
        """Every finding matching the filters, oldest first, fetching pages as needed."""
        params = {"status": status, "severity": severity, "dataset": dataset, "limit": page_size}
        for page in self._pages("/v1/findings", params, FindingPage):
            yield from page.items

    def finding(self, finding_id: int) -> Finding:
        return _base.parse(self._get(f"/v1/findings/{finding_id}"), Finding)

    def finding_reads(self, finding_id: int, *, page_size: int = 100) -> Iterator[AccessLogEntry]:
        """Who did: the allowed reads of the finding's dataset from outside its audience."""
        path = f"/v1/findings/{finding_id}/reads"
        for page in self._pages(path, {"limit": page_size}, AccessLogPage):
            yield from page.items

    def exposure(self, dataset: str, *, limit: int = 100, cursor: str | None = None) -> Exposure:
        """Who could read ``dataset``: counts and a page of excess principals."""
        params = _base.query({"limit": limit, "cursor": cursor})
        return _base.parse(self._get(f"/v1/datasets/{dataset}/exposure", params), Exposure)

    def access_log(
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
    ) -> Iterator[AccessLogEntry]:
        """Access-log entries matching the filters, newest first, fetching pages as needed."""
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
        for page in self._pages("/v1/access-log", params, AccessLogPage):
            yield from page.items

    def access_log_page(
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
        response = self._get("/v1/access-log", _base.query(params))
        return _base.parse(response, AccessLogPage)

    def access_log_entry(self, entry_id: int) -> AccessLogEntry:
        return _base.parse(self._get(f"/v1/access-log/{entry_id}"), AccessLogEntry)

    def verify_access_log(self) -> VerifyResult:
        return _base.parse(self._get("/v1/access-log/verify"), VerifyResult)

    def alerts(self, *, after: int = 0, limit: int = 100) -> AlertFeed:
        """One poll: alerts with ids above ``after``. Keep ``feed.last_id`` for the next poll:
        every alert is seen exactly once, in order."""
        params = _base.query({"after": after, "limit": limit})
        return _base.parse(self._get("/v1/alerts", params), AlertFeed)

    def follow_alerts(
        self, *, after: int = 0, interval: float = 5.0, limit: int = 100
    ) -> Iterator[AlertFeed]:
        """Poll forever: yields each non-empty feed page; sleeps ``interval`` when caught up.
        Persist ``page.last_id`` after handling a page to resume exactly there."""
        while True:
            feed = self.alerts(after=after, limit=limit)
            after = feed.last_id
            if feed.items:
                yield feed
            if len(feed.items) < limit:
                self._sleep(interval)

    def _pages(
        self, path: str, params: Mapping[str, Any], page_type: type[PageT]
    ) -> Iterator[PageT]:
        cursor: str | None = None
        while True:
            page = _base.parse(
                self._get(path, _base.query({**params, "cursor": cursor})), page_type
            )
            yield page
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def _get(self, path: str, params: Mapping[str, str | int] | None = None) -> _base.Answer:
        """GET with retries: idempotent, so transport errors and 502/503/504 are retried."""
        deadline = Deadline.start(self.deadline)
        with _deadline.active(deadline):
            for attempt in range(self.retries.attempts):
                last = attempt + 1 >= self.retries.attempts
                try:
                    response = self._send("GET", path, deadline, params=params)
                except httpx.HTTPError as exc:
                    if last or not isinstance(exc, httpx.TransportError):
                        raise _base.translate(exc, deadline) from exc
                    self._sleep(min(self.retries.delay(attempt), deadline.check()))
                    continue
                if response.status_code in _base.RETRYABLE_STATUS and not last:
                    delay = self.retries.delay(attempt, _base.retry_after(response))
                    self._sleep(min(delay, deadline.check()))
                    continue
                return response
        raise AssertionError("unreachable")  # pragma: no cover


class Guard:
    """``client.guard(...)``: check on entry (or before each call), raise ``AccessDenied``."""

    def __init__(self, client: AclauditClient, args: dict[str, Arg]) -> None:
        self._client = client
        self._args = args

    def __enter__(self) -> CheckResult:
        if any(callable(v) for v in self._args.values()):
            raise TypeError("function arguments to guard() only work in the decorator form")
        return self._client.require(**self._args)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def __call__(self, func: Callable[P, R]) -> Callable[P, R]:
        if inspect.iscoroutinefunction(func):
            raise TypeError("decorate coroutine functions with AsyncAclauditClient.guard")
        signature = inspect.signature(func)

        @functools.wraps(func)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            self._client.require(**resolve(signature, self._args, args, kwargs))
            return func(*args, **kwargs)

        return guarded


def resolve(
    signature: inspect.Signature,
    spec: Mapping[str, Arg],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
) -> dict[str, Any]:
    """The guard's arguments for one call: functions applied to the call's named arguments."""
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    return {k: (v(bound.arguments) if callable(v) else v) for k, v in spec.items()}
