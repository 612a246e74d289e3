"""Every way aclaudit can fail to answer is a deny, never an allow (httpx.MockTransport)."""

import json
from typing import Any

import httpx
import pytest

from app.client import (
    AccessDenied,
    AuthenticationError,
    CheckRequest,
    InvalidRequest,
    PermissionDenied,
    ProtocolError,
    Retries,
    ServiceUnavailable,
    TimeoutException,
    TransportError,
)
from tests.client.conftest import ALLOW, DENY

CHECK: dict[str, Any] = {"principal": "service:trainer", "dataset": "employee_activity.keystrokes"}


def answer(status: int, body: object = None, **kwargs: object) -> httpx.Response:
    if isinstance(body, bytes):
        return httpx.Response(status, content=body, **kwargs)  # type: ignore[arg-type]
    return httpx.Response(status, json=body, **kwargs)  # type: ignore[arg-type]


def raising(exc_type: type[httpx.TransportError]):
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise exc_type("boom", request=request)

    handler.calls = calls  # type: ignore[attr-defined]
    return handler


def assert_fail_closed(result, error_type: type[Exception]) -> None:
    assert result.decision == "deny"
    assert result.allowed is False
    assert result.recorded is False and result.access_log_id is None
    assert result.reason.code == "unavailable"
    assert isinstance(result.error, error_type)


async def test_allow_is_returned_with_its_log_entry(make):
    sent: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        assert request.headers["Authorization"] == "Bearer t0ken"
        assert request.url.path == "/v1/check"
        return answer(200, ALLOW)

    result = await make(handler).call(
        "check", **CHECK, purpose="model-training", data_subjects=["user:bob"], request_id="r1"
    )
    assert result.allowed and result.decision == "allow" and result.recorded
    assert (result.access_log_id, result.reason.grant_id) == (7, 3)
    assert result.reason.via == ("service:trainer",)
    assert sent == [
        {
            **CHECK,
            "action": "read",
            "purpose": "model-training",
            "data_subjects": ["user:bob"],
            "request_id": "r1",
        }
    ]


async def test_recorded_deny_is_a_deny(make):
    result = await make(lambda r: answer(200, DENY)).call("check", **CHECK)
    assert not result.allowed and result.recorded and result.reason.code == "no_grant"


@pytest.mark.parametrize(
    "error", [httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout, httpx.ConnectTimeout]
)
async def test_timeout_is_a_deny(make, error):
    result = await make(raising(error)).call("check", **CHECK)
    assert_fail_closed(result, TimeoutException)


async def test_read_timeout_is_not_retried_because_the_check_may_be_logged(make):
    handler = raising(httpx.ReadTimeout)
    await make(handler).call("check", **CHECK)
    assert len(handler.calls) == 1


@pytest.mark.parametrize("error", [httpx.ReadError, httpx.RemoteProtocolError])
async def test_connection_lost_after_sending_is_a_deny_without_retry(make, error):
    handler = raising(error)
    result = await make(handler).call("check", **CHECK)
    assert_fail_closed(result, TransportError)
    assert len(handler.calls) == 1


async def test_refused_connection_is_retried_then_a_deny(make):
    handler = raising(httpx.ConnectError)
    result = await make(handler).call("check", **CHECK)
    assert_fail_closed(result, TransportError)
    assert len(handler.calls) == 3  # Retries(attempts=3): never sent, so safe to retry


async def test_refused_connection_then_answer_is_the_answer(make):
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise httpx.ConnectError("refused", request=request)
        return answer(200, ALLOW)

    result = await make(handler).call("check", **CHECK)
    assert result.allowed and calls == 2


@pytest.mark.parametrize(
    "status,body",
    [
        (503, {"type": "x", "title": "t", "status": 503, "detail": "not recorded", **DENY}),
        (503, {"status": 503, "decision": "allow", "allowed": True}),  # a 503 never allows
        (500, {"type": "x", "title": "Internal error", "status": 500, "detail": "?"}),
        (502, b"<html>bad gateway</html>"),
        (504, b""),
    ],
)
async def test_5xx_is_a_deny_and_not_retried(make, status, body):
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return answer(status, body)

    result = await make(handler).call("check", **CHECK)
    assert_fail_closed(result, ServiceUnavailable)
    assert result.error.status_code == status
    assert calls == 1


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"",
        b"[]",
        b'{"decision": "allow"}',  # no access_log_id: an allow without its log entry
        json.dumps({**ALLOW, "access_log_id": None}).encode(),
        json.dumps({**ALLOW, "allowed": False}).encode(),  # contradicts itself
        json.dumps({**DENY, "allowed": True}).encode(),
        json.dumps({**ALLOW, "allowed": "true"}).encode(),  # not a JSON boolean
        json.dumps({**ALLOW, "decision": "ALLOW"}).encode(),
        json.dumps({**ALLOW, "decision": "maybe"}).encode(),
        json.dumps({**ALLOW, "reason": "granted"}).encode(),
        json.dumps(ALLOW).encode() * 2,  # two documents
        b"\xef\xbb\xbf" + json.dumps(ALLOW).encode(),
    ],
)
async def test_malformed_body_is_a_deny(make, body):
    result = await make(lambda r: answer(200, body)).call("check", **CHECK)
    assert_fail_closed(result, ProtocolError)


@pytest.mark.parametrize("status", [201, 202, 204, 301, 302, 307])
async def test_only_200_can_allow(make, status):
    headers = {"Location": "http://elsewhere/v1/check"} if 300 <= status < 400 else {}
    result = await make(lambda r: answer(status, ALLOW, headers=headers)).call("check", **CHECK)
    assert_fail_closed(result, ProtocolError)


def reason(code: str) -> dict[str, Any]:
    return {"code": code, "grant_id": None, "via": []}


@pytest.mark.parametrize(
    "body",
    [
        {**ALLOW, "reason": reason("no_grant")},  # an allow must say why: granted
        {**ALLOW, "reason": reason("denied_by_grant")},
        {**ALLOW, "reason": reason("held_by_guard")},
        {**ALLOW, "reason": reason("")},
        {**ALLOW, "access_log_id": -1},  # an allow's log entry is a real row id
        {**ALLOW, "access_log_id": 0},
        {**ALLOW, "access_log_id": 10**30},
        {**ALLOW, "access_log_id": 2**63},
        {**ALLOW, "access_log_id": "12"},
        {**ALLOW, "access_log_id": True},
        {**ALLOW, "access_log_id": 12.0},
        {**ALLOW, "decision_id": ""},
        {k: v for k, v in ALLOW.items() if k != "decision_id"},
        {**DENY, "reason": reason("granted")},  # contradicts itself
    ],
)
async def test_inconsistent_answer_is_not_an_allow(make, body):
    result = await make(lambda r: answer(200, body)).call("check", **CHECK)
    assert_fail_closed(result, ProtocolError)


def twice(first: dict[str, Any], then: dict[str, Any]) -> bytes:
    """One JSON object with every key of ``first`` and then again of ``then``."""
    return b"{" + json.dumps(first).encode()[1:-1] + b"," + json.dumps(then).encode()[1:-1] + b"}"


@pytest.mark.parametrize(
    "body",
    [
        twice(DENY, ALLOW),  # parsers that keep the first key read a deny
        twice({"decision": "deny", "allowed": False}, ALLOW),
        json.dumps(ALLOW)
        .replace('"code": "granted"', '"code": "no_grant", "code": "granted"')
        .encode(),
    ],
)
async def test_answer_with_a_key_twice_is_not_an_allow(make, body):
    result = await make(lambda r: answer(200, body)).call("check", **CHECK)
    assert_fail_closed(result, ProtocolError)


async def test_batch_answer_with_a_key_twice_denies_every_check(make):
    body = b'{"results": [' + json.dumps(ALLOW).encode() + b"," + twice(DENY, ALLOW) + b"]}"
    results = await make(lambda r: answer(200, body)).call(
        "check_batch", [CheckRequest(**CHECK), CheckRequest(**CHECK)]
    )
    for result in results:
        assert_fail_closed(result, ProtocolError)


async def test_huge_answer_is_not_read_whole_and_not_an_allow(make):
    padded = json.dumps({**ALLOW, "padding": "x" * (17 * 1024 * 1024)}).encode()
    result = await make(lambda r: answer(200, padded)).call("check", **CHECK)
    assert_fail_closed(result, ProtocolError)
    assert "larger than" in str(result.error)


@pytest.mark.parametrize(
    "code", ["no_grant", "denied_by_grant", "unknown_dataset", "grant_expired", "held_by_guard"]
)
async def test_any_deny_code_is_a_recorded_deny(make, code):
    """Deny codes added to the contract later are still denies, with their log entry."""
    result = await make(lambda r: answer(200, {**DENY, "reason": reason(code)})).call(
        "check", **CHECK
    )
    assert result.decision == "deny" and not result.allowed
    assert result.recorded and result.reason.code == code


async def test_largest_log_id_is_accepted(make):
    result = await make(lambda r: answer(200, {**ALLOW, "access_log_id": 2**63 - 1})).call(
        "check", **CHECK
    )
    assert result.allowed and result.access_log_id == 2**63 - 1


@pytest.mark.parametrize(
    "status,error",
    [(401, AuthenticationError), (403, PermissionDenied), (422, InvalidRequest)],
)
async def test_4xx_raises_instead_of_deciding(make, status, error):
    problem = {"type": "x", "title": "t", "status": status, "detail": "because"}
    with pytest.raises(error, match="because") as info:
        await make(lambda r: answer(status, problem), fail_open=True).call("check", **CHECK)
    assert info.value.status_code == status and info.value.problem["detail"] == "because"


async def test_fail_open_turns_unavailability_into_an_unrecorded_allow(make, caplog):
    result = await make(lambda r: answer(503, {"decision": "deny"}), fail_open=True).call(
        "check", **CHECK
    )
    assert result.allowed and result.decision == "allow"
    assert result.reason.code == "fail_open" and not result.recorded
    assert "FAILING OPEN" in caplog.text


async def test_guard_runs_the_read_only_on_allow(make):
    reads: list[str] = []
    decision = await make(lambda r: answer(200, ALLOW)).guarded(
        lambda: reads.append("read"), **CHECK, purpose="p"
    )
    assert reads == ["read"] and decision.access_log_id == 7


async def test_guard_raises_access_denied_with_the_decision(make):
    reads: list[str] = []
    with pytest.raises(AccessDenied) as info:
        await make(lambda r: answer(200, DENY)).guarded(lambda: reads.append("read"), **CHECK)
    assert reads == []
    assert info.value.decision == "deny" and info.value.reason == "no_grant"
    assert info.value.access_log_id == 8
    assert "access log entry 8" in str(info.value)


@pytest.mark.parametrize(
    "handler",
    [
        raising(httpx.ReadTimeout),
        lambda r: answer(503, {"decision": "deny"}),
        lambda r: answer(200, b"{"),
    ],
)
async def test_guard_refuses_the_read_when_aclaudit_cannot_answer(make, handler):
    reads: list[str] = []
    with pytest.raises(AccessDenied) as info:
        await make(handler).guarded(lambda: reads.append("read"), **CHECK)
    assert reads == []
    assert info.value.reason == "unavailable" and info.value.access_log_id is None
    assert info.value.__cause__ is info.value.result.error


async def test_batch_answers_in_order(make):
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/check/batch"
        assert len(json.loads(request.content)["checks"]) == 2
        return answer(200, {"results": [ALLOW, DENY]})

    checks = [CheckRequest(**CHECK), CheckRequest("user:eve", "employee_activity.transcripts")]
    results = await make(handler).call("check_batch", checks)
    assert [r.allowed for r in results] == [True, False]
    assert results[1].principal == "user:eve"


@pytest.mark.parametrize(
    "handler",
    [
        raising(httpx.ReadTimeout),
        lambda r: answer(503, {"decision": "deny"}),
        lambda r: answer(200, {"results": [ALLOW]}),  # one answer for two checks
        lambda r: answer(200, {"results": [ALLOW, {"decision": "allow"}]}),
        lambda r: answer(200, {"results": [ALLOW, {**ALLOW, "reason": reason("no_grant")}]}),
        lambda r: answer(200, {"results": [ALLOW, {**ALLOW, "access_log_id": -1}]}),
        lambda r: answer(200, {"results": [ALLOW, ALLOW, ALLOW]}),  # three for two
        lambda r: answer(201, {"results": [ALLOW, ALLOW]}),
    ],
)
async def test_batch_failure_denies_every_check(make, handler):
    checks = [CheckRequest(**CHECK), CheckRequest(**CHECK)]
    results = await make(handler).call("check_batch", checks)
    assert [r.decision for r in results] == ["deny", "deny"]
    assert not any(r.allowed or r.recorded for r in results)


def test_retries_must_count_the_first_attempt():
    with pytest.raises(ValueError):
        Retries(attempts=0)


def test_backoff_grows_and_honours_retry_after_up_to_the_cap():
    retries = Retries(attempts=5, backoff=0.1, max_backoff=0.5)
    assert 0.05 <= retries.delay(0) <= 0.1
    assert 0.2 <= retries.delay(2) <= 0.4
    assert retries.delay(10) <= 0.5
    assert retries.delay(0, retry_after=30) == 0.5


async def test_a_single_subject_string_is_refused_before_sending(make):
    with pytest.raises(TypeError, match="list of principals"):
        await make(lambda r: answer(200, ALLOW)).call("check", **CHECK, data_subjects="user:bob")
