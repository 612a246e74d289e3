"""Both clients behind one async interface, so every failure mode is shown for each."""

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from app.client import AclauditClient, AsyncAclauditClient, Retries

Handler = Callable[[httpx.Request], httpx.Response]
FAST = Retries(attempts=3, backoff=0.0, max_backoff=0.0)
ALLOW = {
    "decision": "allow",
    "allowed": True,
    "decision_id": "d-1",
    "access_log_id": 7,
    "reason": {"code": "granted", "grant_id": 3, "via": ["service:trainer"]},
    "out_of_audience": False,
    "policy_version": 2,
}
DENY = {
    **ALLOW,
    "decision": "deny",
    "allowed": False,
    "access_log_id": 8,
    "reason": {"code": "no_grant", "grant_id": None, "via": []},
}


class Either:
    """A sync or async client, driven with ``await``."""

    def __init__(self, client: AclauditClient | AsyncAclauditClient) -> None:
        self.client = client
        self.is_async = isinstance(client, AsyncAclauditClient)

    async def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        result = getattr(self.client, name)(*args, **kwargs)
        return await result if self.is_async else result

    async def collect(self, name: str, **kwargs: Any) -> list[Any]:
        items = getattr(self.client, name)(**kwargs)
        if self.is_async:
            return [item async for item in items]
        return list(items)

    async def guarded(self, body: Callable[[], Any], **kwargs: Any) -> Any:
        if isinstance(self.client, AsyncAclauditClient):
            async with self.client.guard(**kwargs) as decision:
                body()
                return decision
        with self.client.guard(**kwargs) as decision:
            body()
            return decision


@pytest.fixture(params=["sync", "async"])
async def make(request: pytest.FixtureRequest) -> AsyncIterator[Callable[..., Either]]:
    made: list[Either] = []

    def build(handler: Handler, **kwargs: Any) -> Either:
        kwargs.setdefault("retries", FAST)
        transport = httpx.MockTransport(handler)
        cls = AclauditClient if request.param == "sync" else AsyncAclauditClient
        either = Either(cls("http://aclaudit.test", token="t0ken", transport=transport, **kwargs))
        made.append(either)
        return either

    yield build
    for either in made:
        if isinstance(either.client, AsyncAclauditClient):
            await either.client.aclose()
        else:
            either.client.close()
