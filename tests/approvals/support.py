"""Two-person control in tests: the `policy:write` token requests, the admin token approves."""

from typing import Any

import httpx

UNTIL = "2099-01-01T00:00:00Z"


async def request(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    *,
    reason: str = "reviewed",
    until: str = UNTIL,
) -> httpx.Response:
    change = {"method": method, "path": path, "body": body or {}}
    return await client.post(
        "/v1/approvals", json={"change": change, "reason": reason, "until": until}, headers=headers
    )


async def approved(
    client: httpx.AsyncClient,
    requester: dict[str, str],
    approver: dict[str, str],
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    *,
    reason: str = "reviewed",
    until: str = UNTIL,
) -> httpx.Response:
    """Request the change as `requester`, approve it as `approver`: the approval's answer (its
    `result` is what the change's own endpoint answered)."""
    r = await request(client, requester, method, path, body, reason=reason, until=until)
    assert r.status_code == 201, r.text
    return await client.post(f"/v1/approvals/{r.json()['id']}/approve", headers=approver)
