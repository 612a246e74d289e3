"""A scan by another worker finds nothing to update after membership changes (samples)."""

import httpx
from fastapi import FastAPI

from app.main import create_app


async def test_a_scan_by_another_worker_rewrites_no_sample(app: FastAPI, client, admin, settings):
    body = {"owner": "user:o", "sensitivity": "internal", "intended_audience": ["user:o"]}
    assert (await client.put("/v1/datasets/t6.ds", json=body, headers=admin)).status_code == 201
    grant = {"principal": "group:x", "resource": "t6.ds", "action": "read", "effect": "allow"}
    assert (await client.post("/v1/grants", json=grant, headers=admin)).status_code == 201
    for n in (1, 2, 3):
        r = await client.post("/v1/groups/x/members", json={"member": f"user:u{n}"}, headers=admin)
        assert r.status_code == 200, r.text
    assert (await client.delete("/v1/groups/x/members/user:u1", headers=admin)).status_code == 200
    r = await client.post("/v1/groups/x/members", json={"member": "user:u1"}, headers=admin)
    assert r.status_code == 200
    other = create_app(settings)
    async with other.router.lifespan_context(other):
        transport = httpx.ASGITransport(app=other)
        async with httpx.AsyncClient(transport=transport, base_url="http://other") as c:
            scan = (await c.post("/v1/scan", headers=admin)).json()
    assert (scan["opened"], scan["resolved"], scan["updated"]) == (0, 0, 0), scan
