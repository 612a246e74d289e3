"""The plain-ASGI answer to ``POST /v1/check`` (app.checks.fast_path) is the route's answer.

A token's first check goes through the documented FastAPI route (the token is not cached yet);
later ones are answered by the fast path. Both must give the same document, headers and log
entry, and everything the fast path does not handle must get the route's own problem documents.
"""

import json

from app.checks.fast_path import CHECK_PATH

from .test_check import check_body, seed


async def test_fast_answer_matches_the_route_answer(client, tokens, admin):
    await seed(client, admin)
    body = check_body("user:bob", purpose="p", request_id="r", data_subjects=["user:x"])
    first = await client.post(CHECK_PATH, json=body, headers=tokens["check"])  # the route
    second = await client.post(CHECK_PATH, json=body, headers=tokens["check"])  # fast path
    assert first.status_code == second.status_code == 200
    assert first.headers["content-type"] == second.headers["content-type"] == "application/json"
    a, b = first.json(), second.json()
    assert list(a) == list(b)  # same fields, same order
    assert b["access_log_id"] == a["access_log_id"] + 1
    for doc in (a, b):
        doc.pop("access_log_id"), doc.pop("decision_id")
    assert a == b
    assert json.loads(second.content) == second.json()
    entry = await client.get(f"/v1/access-log/{second.json()['access_log_id']}", headers=admin)
    assert entry.json()["data_subjects"] == ["user:x"] and entry.json()["caller"] == "check"
    verify = (await client.get("/v1/access-log/verify", headers=admin)).json()
    assert verify["ok"] is True and verify["entries"] == 2


async def test_invalid_body_with_a_cached_token_gets_the_route_422(client, tokens, admin):
    await seed(client, admin)
    ok = await client.post(CHECK_PATH, json=check_body("user:alice"), headers=tokens["check"])
    assert ok.status_code == 200
    r = await client.post(
        CHECK_PATH, json=check_body("someone", dataset="Bad..Id"), headers=tokens["check"]
    )
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    fields = {e["field"] for e in r.json()["errors"]}
    assert {"body.principal", "body.dataset"} <= fields
    r = await client.post(CHECK_PATH, content=b"{not json", headers=tokens["check"])
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    extra = {**check_body("user:alice"), "surprise": 1}
    r = await client.post(CHECK_PATH, json=extra, headers=tokens["check"])
    assert r.status_code == 422 and "body.surprise" in r.json()["detail"]


async def test_cached_token_without_check_scope_stays_forbidden(client, tokens, admin):
    await seed(client, admin)
    for _ in range(2):  # the first lookup caches the caller; the second must still be refused
        r = await client.post(CHECK_PATH, json=check_body("user:a"), headers=tokens["audit:read"])
        assert r.status_code == 403
        assert r.headers["content-type"] == "application/problem+json"


async def test_other_authorization_forms_get_the_route_401(client, tokens, admin):
    await seed(client, admin)
    await client.post(CHECK_PATH, json=check_body("user:alice"), headers=tokens["check"])
    token = tokens["check"]["Authorization"].split()[1]
    for header in (f"Basic {token}", "Bearer ", "Bearer acl_unknown"):
        r = await client.post(
            CHECK_PATH, json=check_body("user:alice"), headers={"Authorization": header}
        )
        assert r.status_code == 401, header
        assert r.headers["www-authenticate"] == "Bearer"
        assert r.headers["content-type"] == "application/problem+json"


async def test_check_stays_in_the_openapi_document(app):
    operation = app.openapi()["paths"][CHECK_PATH]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/CheckRequest"
    )
    assert {"200", "401", "403", "422", "503"} <= set(operation["responses"])
