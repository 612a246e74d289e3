"""The baseline for bench/check.py: a bare FastAPI POST endpoint that returns a constant JSON.

It neither parses the body nor touches a database, so it measures what uvicorn + FastAPI cost per
request on this machine; aclaudit's figures are recorded as a ratio to it. Served exactly like
aclaudit::

    uvicorn bench.bare_app:app --workers 1 --log-level warning --host 127.0.0.1 --port 8001
"""

from fastapi import FastAPI

app = FastAPI(title="bench-bare", openapi_url=None, docs_url=None, redoc_url=None)

DECISION = {"decision": "allow"}


@app.post("/v1/check")
async def check() -> dict[str, str]:
    return DECISION


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
