"""Request bodies over ACLAUDIT_MAX_BODY_BYTES: 413 problem, before the body is buffered (or,
for a Content-Length over the limit, any token looked at), and nothing is decided, logged or
changed. A streamed body without a token is refused 401 before any of it is read."""

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from app.checks.schemas import MAX_BATCH, MAX_BATCH_SUBJECTS, CheckBatchRequest
from app.config import Settings

LIMIT = 64 * 1024
PROBLEM_JSON = "application/problem+json"
CHECK = {"principal": "user:a", "dataset": "some.data", "action": "read"}


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, max_body_bytes=LIMIT)


def oversized_check() -> bytes:
    body = json.dumps({**CHECK, "purpose": "x" * 200, "request_id": " " * LIMIT})
    assert len(body) > LIMIT
    return body.encode()


async def chunks(body: bytes, size: int = 8192) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def assert_too_large(r: httpx.Response) -> None:
    assert r.status_code == 413, r.text
    assert r.headers["content-type"] == PROBLEM_JSON
    problem = r.json()
    assert problem["status"] == 413
    assert "ACLAUDIT_MAX_BODY_BYTES" in problem["detail"]


async def log_size(client: httpx.AsyncClient, tokens) -> int:
    r = await client.get("/v1/access-log", headers=tokens["audit:read"])
    assert r.status_code == 200, r.text
    return len(r.json()["items"])


@pytest.mark.parametrize("scope", ["check", None])
@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
async def test_an_oversized_check_is_refused_and_not_logged(client, tokens, scope, streamed):
    body = oversized_check()
    headers = {"Content-Type": "application/json", **(tokens[scope] if scope else {})}
    content = chunks(body) if streamed else body
    r = await client.post("/v1/check", content=content, headers=headers)
    if streamed and scope is None:
        assert r.status_code == 401, r.text  # the token is looked at before the body is read
    else:
        assert_too_large(r)
    assert await log_size(client, tokens) == 0


async def test_an_oversized_batch_is_refused_and_a_batch_under_the_limit_is_answered(
    client, tokens
):
    headers = {"Content-Type": "application/json", **tokens["check"]}
    under = json.dumps({"checks": [CHECK] * 100}).encode()
    over = json.dumps({"checks": [CHECK] * 1000}).encode()
    assert len(under) < LIMIT < len(over)
    assert_too_large(await client.post("/v1/check/batch", content=chunks(over), headers=headers))
    assert await log_size(client, tokens) == 0
    r = await client.post("/v1/check/batch", content=under, headers=headers)
    assert r.status_code == 200, r.text
    assert await log_size(client, tokens) == 100


async def test_an_oversized_mutation_is_refused_trailed_and_changes_nothing(app, client, admin):
    members = [f"user:member-{n:06d}" for n in range(LIMIT // 10)]
    body = json.dumps({"members": members}).encode()
    assert len(body) > LIMIT
    headers = {"Content-Type": "application/json", **admin}
    assert_too_large(await client.put("/v1/groups/big/members", content=body, headers=headers))
    assert (await client.get("/v1/groups/big", headers=admin)).status_code == 404
    # refused before the token was looked at: counted with other such refusals, written by the
    # sweeper's next tick (or now)
    await app.state.sweeper.flush_refusals()
    trail = (await client.get("/v1/admin/trail", headers=admin)).json()["items"]  # newest first
    refused = [e for e in trail if e["path"] == "/v1/groups/big/members"]
    assert [(e["method"], e["status"], e["count"]) for e in refused] == [("PUT", 413, 1)]


def test_the_largest_valid_check_batch_fits_the_default_limit():
    wide = "\U0001f600"  # one character, twelve bytes of JSON (a surrogate pair, escaped)
    check = {
        "principal": "service:" + "s" * 128,
        "dataset": ".".join(["d" * 63] * 8),
        "action": "export",
        "purpose": wide * 200,
        "request_id": wide * 200,
        "data_subjects": [f"user:{n:0128d}" for n in range(MAX_BATCH_SUBJECTS // MAX_BATCH)],
    }
    batch = {"checks": [check] * MAX_BATCH}
    CheckBatchRequest.model_validate(batch)  # valid, at every bound
    size = len(json.dumps(batch).encode())
    assert size < 8 * 1024 * 1024 < Settings().max_body_bytes
