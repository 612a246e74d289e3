"""The example activity store wired to the real aclaudit app in-process (both backends)."""

from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from examples.activity_store import records
from examples.activity_store.app import create_app
from examples.activity_store.config import StoreSettings
from tests.conftest import Tokens

DATASET = "employee_activity.keystrokes"
ALICE = records.employees()[0]  # any demo employee, as a data subject


@pytest.fixture
async def seeded(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    r = await client.put(
        f"/v1/datasets/{DATASET}",
        json={
            "owner": "group:mci-research",
            "sensitivity": "internal",
            "intended_audience": ["service:trainer"],
        },
        headers=admin,
    )
    assert r.status_code in (200, 201), r.text
    for principal in ("service:trainer", "user:eng"):
        r = await client.post(
            "/v1/grants",
            json={
                "principal": principal,
                "resource": "employee_activity.*",
                "action": "read",
                "effect": "allow",
            },
            headers=admin,
        )
        assert r.status_code == 201, r.text


@pytest.fixture
def store(tokens: Tokens) -> Callable[..., "StoreContext"]:
    def build(transport: httpx.AsyncBaseTransport) -> StoreContext:
        token = tokens["check"]["Authorization"].removeprefix("Bearer ")
        settings = StoreSettings(
            aclaudit_url="http://aclaudit.test", aclaudit_token=SecretStr(token)
        )
        return StoreContext(create_app(settings, aclaudit_transport=transport))

    return build


class StoreContext:
    def __init__(self, app: FastAPI) -> None:
        self.app = app

    async def __aenter__(self) -> httpx.AsyncClient:
        self._lifespan = self.app.router.lifespan_context(self.app)
        await self._lifespan.__aenter__()
        self._http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://store.test"
        )
        return self._http

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()
        await self._lifespan.__aexit__(None, None, None)


def read(http: httpx.AsyncClient, principal: str, kind: str = "keystrokes", **params):
    return http.get(f"/v1/records/{kind}", params=params, headers={"X-Principal": principal})


async def test_allowed_read_returns_records_and_logs_who_was_read(
    app, client, admin, seeded, store
):
    async with store(httpx.ASGITransport(app=app)) as http:
        r = await read(http, "service:trainer", purpose="model-training", subject=[ALICE])
        assert r.status_code == 200, r.text
        body = r.json()
        assert [i["subject"] for i in body["items"]] == [ALICE]
        assert len(body["items"][0]["records"]) == 5
        assert body["decision"]["decision"] == "allow"
        assert body["decision"]["out_of_audience"] is False

        page = (await read(http, "service:trainer", purpose="model-training", limit=3)).json()
        assert [i["subject"] for i in page["items"]] == list(records.employees()[:3])
        assert page["next_cursor"] == "3"

    entry = (
        await client.get(f"/v1/access-log/{body['decision']['access_log_id']}", headers=admin)
    ).json()
    assert entry["principal"] == "service:trainer" and entry["dataset"] == DATASET
    assert entry["purpose"] == "model-training" and entry["data_subjects"] == [ALICE]
    assert entry["caller"] == "check"  # the store's token


async def test_out_of_audience_read_is_allowed_and_flagged(app, seeded, store):
    async with store(httpx.ASGITransport(app=app)) as http:
        r = await read(http, "user:eng", "keystrokes", purpose="dashboard", subject=[ALICE])
    assert r.status_code == 200 and r.json()["decision"]["out_of_audience"] is True


async def test_denied_read_is_403_without_records(app, seeded, store):
    async with store(httpx.ASGITransport(app=app)) as http:
        r = await read(http, "user:nobody", purpose="curiosity", subject=[ALICE])
    assert r.status_code == 403
    body = r.json()
    assert "items" not in body and body["decision"]["reason"] == "no_grant"
    assert body["decision"]["access_log_id"] is not None


@pytest.mark.parametrize(
    "failure",
    [
        lambda request: httpx.Response(503, json={"decision": "deny"}),
        lambda request: httpx.Response(200, content=b"{"),
        lambda request: (_ for _ in ()).throw(httpx.ReadTimeout("slow", request=request)),
    ],
)
async def test_unavailable_aclaudit_refuses_the_read(store, failure):
    async with store(httpx.MockTransport(failure)) as http:
        r = await read(http, "service:trainer", purpose="model-training", subject=[ALICE])
    assert r.status_code == 503 and "items" not in r.json()
    assert r.json()["decision"]["reason"] == "unavailable"


async def test_bad_requests(app, seeded, store):
    async with store(httpx.ASGITransport(app=app)) as http:
        assert (await http.get("/v1/records/keystrokes?purpose=x")).status_code == 422
        assert (await read(http, "service:trainer", subject=[ALICE])).status_code == 422
        assert (await read(http, "service:trainer", "salaries", purpose="x")).status_code == 422
        r = await read(http, "nobody", purpose="x", subject=[ALICE])
        assert r.status_code == 422 and "principal" in r.json()["detail"]
        r = await read(http, "service:trainer", purpose="x", subject=["user:not-an-employee"])
        assert r.status_code == 404


def test_records_are_deterministic():
    kind = records.Kind.transcripts
    assert records.records(kind, ALICE) == records.records(kind, ALICE)
    assert records.records(kind, ALICE) != records.records(kind, records.employees()[1])
    assert len(records.employees()) > 2000
