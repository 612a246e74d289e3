"""A person's /v1/me/reads after the operator archived their oldest reads."""

from datetime import datetime
from typing import Any

import httpx
import pytest

from app.accesslog import archiver
from app.auth.oidc.dev_idp import DevIssuer
from app.config import Settings
from tests.accesslog.archive_helpers import KEY
from tests.me.test_me import check, record
from tests.oidc import People, oidc_settings


@pytest.fixture
def settings(database_url: str, idp: DevIssuer) -> Settings:
    return oidc_settings(database_url, idp.url, checkpoint_every=10, checkpoint_key=KEY)


async def test_my_reads_last_page_says_older_reads_were_archived(
    client: httpx.AsyncClient, tokens: Any, people: People, sessionmaker, settings, tmp_path
) -> None:
    """The last page is not the whole story once reads were archived: it says up to which
    entry, and a cursor into the archived range answers the 410 the OpenAPI document lists."""
    await record(client, tokens["check"], [check("user:bob", ["user:alice"])] * 10)
    [newest] = await record(client, tokens["check"], [check("user:eve", ["user:alice"])])
    await archiver.archive(
        sessionmaker,
        settings,
        before=datetime.fromisoformat("2100-01-01T00:00:00+00:00"),
        directory=tmp_path,
        max_entries=10,
        progress=lambda _: None,
    )
    page = (await client.get("/v1/me/reads", headers=people.headers("alice"))).json()
    assert [e["id"] for e in page["items"]] == [newest]
    assert page["archived_through"] == 10
    r = await client.get("/v1/me/reads?cursor=5", headers=people.headers("alice"))
    assert r.status_code == 410, r.text
    app = client._transport.app  # type: ignore[attr-defined]
    assert "410" in app.openapi()["paths"]["/v1/me/reads"]["get"]["responses"]
