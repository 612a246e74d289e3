"""`/v1/me`: a person signed in with the company's IdP sees who read their data and what they
may read; nobody else's."""

import asyncio
import itertools
import threading
from collections.abc import Awaitable, Iterator
from typing import Any, TypeVar

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st
from sqlalchemy import func, select

from app.auth import service as auth_service
from app.auth.models import TrailEntry
from app.auth.oidc.dev_idp import DevIssuer
from app.auth.person_rate import PersonRate
from app.config import Settings
from app.main import create_app
from tests.oidc import People, group_of, oidc_settings

T = TypeVar("T")


@pytest.fixture
def settings(database_url: str, idp: DevIssuer) -> Settings:
    return oidc_settings(database_url, idp.url)


def check(principal: str, subjects: list[str], dataset: str = "hr.keystrokes") -> dict[str, Any]:
    return {
        "principal": principal,
        "dataset": dataset,
        "action": "read",
        "purpose": "model-training",
        "data_subjects": subjects,
    }


async def record(client: httpx.AsyncClient, headers: dict[str, str], checks: list[dict]) -> list:
    r = await client.post("/v1/check/batch", json={"checks": checks}, headers=headers)
    assert r.status_code == 200, r.text
    return [result["access_log_id"] for result in r.json()["results"]]


async def all_reads(client: httpx.AsyncClient, headers: dict[str, str], limit: int) -> list:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = f"?limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        r = await client.get("/v1/me/reads" + query, headers=headers)
        assert r.status_code == 200, r.text
        items += r.json()["items"]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return items


async def test_a_person_sees_who_read_their_data_and_nothing_else(
    client: httpx.AsyncClient, tokens: Any, people: People, admin: dict[str, str]
) -> None:
    ids = await record(
        client,
        tokens["check"],
        [
            check("user:bob", ["user:alice", "user:carol"]),
            check("service:trainer", ["user:carol"]),
            check("service:trainer", ["user:alice"], dataset="hr.transcripts"),
        ],
    )
    r = await client.get("/v1/me/reads", headers=people.headers("alice"))
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [e["id"] for e in items] == [ids[2], ids[0]]  # newest first
    assert items[1]["principal"] == "user:bob" and items[1]["caller"] == "check"
    assert items[1]["purpose"] == "model-training" and items[1]["decision"] == "deny"
    assert "data_subjects" not in items[1]  # carol is not alice's business
    assert set(items[1]) == {
        "id", "at", "principal", "caller", "dataset", "action", "purpose", "decision",
        "out_of_audience",
    }  # fmt: skip
    r = await client.get("/v1/me/reads", headers=people.headers("dave"))
    assert r.json() == {"items": [], "next_cursor": None, "archived_through": None}
    # trailed, under the person's name
    [entry] = (await client.get("/v1/admin/trail?limit=1", headers=admin)).json()["items"]
    assert (entry["token_name"], entry["path"]) == ("user:dave", "/v1/me/reads")


async def test_a_person_sees_what_they_may_read(
    client: httpx.AsyncClient, people: People, admin: dict[str, str]
) -> None:
    for dataset in ("hr.keystrokes", "hr.transcripts"):
        body = {"owner": "group:hr", "sensitivity": "internal"}
        assert (await client.put(f"/v1/datasets/{dataset}", json=body, headers=admin)).is_success
    grant = {"principal": "group:eng", "resource": "hr.keystrokes", "action": "read"}
    r = await client.post("/v1/grants", json={**grant, "effect": "allow"}, headers=admin)
    assert r.status_code == 201, r.text
    r = await client.put("/v1/groups/eng/members", json={"members": ["user:alice"]}, headers=admin)
    assert r.status_code == 200, r.text
    mine = await client.get("/v1/me/access", headers=people.headers("alice"))
    assert mine.status_code == 200, mine.text
    theirs = await client.get("/v1/principals/user:alice/access", headers=admin)
    assert mine.json() == theirs.json()
    assert [d["dataset"] for d in mine.json()["items"]] == ["hr.keystrokes"]
    nothing = await client.get("/v1/me/access", headers=people.headers("bob"))
    assert nothing.json()["items"] == []


async def test_a_person_flooding_me_is_refused_past_their_rate_and_not_trailed_one_by_one(
    app: FastAPI, client: httpx.AsyncClient, people: People
) -> None:
    app.state.person_rate = PersonRate(per_minute=5)  # (ACLAUDIT_PERSON_REQUESTS_PER_MINUTE)

    async def trail_rows() -> int:
        async with app.state.sessionmaker() as session:
            return int((await session.execute(select(func.count(TrailEntry.id)))).scalar_one())

    for _ in range(5):
        r = await client.get("/v1/me/access", headers=people.headers("mallory"))
        assert r.status_code == 200, r.text
    before = await trail_rows()
    for _ in range(30):
        r = await client.get("/v1/me/reads", headers=people.headers("mallory"))
        assert r.status_code == 429, r.text
        assert int(r.headers["Retry-After"]) >= 1
        assert "user:mallory" in r.json()["detail"]
    assert await trail_rows() == before  # counted as refusals, not 30 chained writes
    r = await client.get("/v1/me/access", headers=people.headers("alice"))  # others unaffected
    assert r.status_code == 200, r.text


# -- property: exactly the entries whose data_subjects contain the person --------------------


class Served:
    """The app on an event loop of its own thread, so a (synchronous) hypothesis test can
    drive it example after example without starting it again."""

    def __init__(self, settings: Settings) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.app = create_app(settings)
        self.lifespan = self.app.router.lifespan_context(self.app)
        self.run(self.lifespan.__aenter__())
        transport = httpx.ASGITransport(app=self.app)
        self.client = httpx.AsyncClient(transport=transport, base_url="http://aclaudit.test")
        self.check_headers = self.run(self._check_headers())

    async def _check_headers(self) -> dict[str, str]:
        async with self.app.state.sessionmaker() as session, session.begin():
            token = await auth_service.create_token(session, name="store", scopes=["check"])
        return {"Authorization": f"Bearer {token}"}

    def run(self, work: Awaitable[T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(120)  # type: ignore[arg-type]

    def close(self) -> None:
        self.run(self.client.aclose())
        self.run(self.lifespan.__aexit__(None, None, None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


@pytest.fixture
def served(settings: Settings) -> Iterator[Served]:
    server = Served(settings)
    yield server
    server.close()


POOL = 4  # people per example: u0 .. u3
logs = st.lists(
    st.tuples(
        st.sampled_from(["user:r0", "service:r1", "user:u0"]),  # who reads
        st.sets(st.integers(0, POOL - 1), max_size=POOL),  # whose data
    ),
    max_size=12,
)


@examples(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(log=logs, page=st.integers(1, 5))
def test_me_reads_is_exactly_the_entries_whose_data_subjects_contain_the_person(
    served: Served, idp: DevIssuer, log: list[tuple[str, set[int]]], page: int
) -> None:
    example = next(EXAMPLES)  # people of this example only: the database outlives it
    person = [f"user:e{example}-u{i}" for i in range(POOL)]
    checks = [check(reader, [person[i] for i in sorted(subjects)]) for reader, subjects in log]
    ids = served.run(record(served.client, served.check_headers, checks)) if checks else []
    people = People(idp)
    for i, principal in enumerate(person):
        mine = people.headers(principal.removeprefix("user:"), [group_of("check")])
        got = served.run(all_reads(served.client, mine, page))
        expected = sorted(
            (entry_id for entry_id, (_, s) in zip(ids, log, strict=True) if i in s),
            reverse=True,
        )
        assert [e["id"] for e in got] == expected


EXAMPLES = itertools.count()
