"""X-Request-ID: accepted when safe, generated otherwise, echoed on every answer, and on every
log line written while serving the request."""

import json
import logging
import sys
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from app.config import Settings
from app.main import create_app
from app.operations.logs import JsonFormatter, accept_request_id, request_id_var

CHECK = {"principal": "user:a", "dataset": "some.data", "action": "read"}


@pytest.mark.parametrize(
    ("incoming", "kept"),
    [
        ("abc-123", True),
        ("trace:4bf92f3577b34da6/00f067aa0ba902b7", True),
        ("a" * 128, True),
        ("a" * 129, False),
        ("", False),
        ("bad id with spaces", False),
        ("-leading-dash", False),
        ('"quoted"', False),
    ],
)
def test_request_id_is_kept_only_when_short_and_safe(incoming: str, kept: bool):
    got = accept_request_id(incoming)
    assert (got == incoming) is kept
    assert len(got) <= 128


async def test_request_id_is_echoed_on_success_and_on_every_error(client, tokens):
    cases = [
        ("GET", "/healthz", None, {}, 200),
        ("POST", "/v1/check", CHECK, tokens["check"], 200),
        ("POST", "/v1/check", CHECK, {}, 401),
        ("GET", "/v1/admin/trail", None, tokens["check"], 403),
        ("POST", "/v1/check", {"principal": "nobody"}, tokens["check"], 422),
        ("GET", "/v1/grants/999", None, tokens["admin"], 404),
    ]
    for n, (method, path, body, headers, status) in enumerate(cases):
        rid = f"case-{n}"
        r = await client.request(method, path, json=body, headers={**headers, "X-Request-ID": rid})
        assert r.status_code == status, (path, r.text)
        assert r.headers["x-request-id"] == rid, path
    r = await client.get("/healthz", headers={"X-Request-ID": "no good"})
    generated = r.headers["x-request-id"]
    assert generated != "no good" and accept_request_id(generated) == generated


async def test_unrecorded_check_503_carries_the_request_id(app: FastAPI, client, tokens):
    await app.state.log_writer.stop()
    r = await client.post(
        "/v1/check", json=CHECK, headers={**tokens["check"], "X-Request-ID": "down-1"}
    )
    assert r.status_code == 503
    assert r.headers["x-request-id"] == "down-1"


async def test_unexpected_500_carries_the_request_id(database_url: str):
    app = create_app(Settings(database_url=database_url, sweeper_enabled=False))

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            r = await client.get("/boom", headers={"X-Request-ID": "boom-1"})
    assert r.status_code == 500
    assert r.headers["x-request-id"] == "boom-1"
    assert "boom" not in r.text  # no traceback in the answer


async def test_every_line_logged_during_a_request_carries_its_id(client, tokens, tmp_path: Path):
    path = tmp_path / "log.jsonl"
    handler = logging.FileHandler(path)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.INFO)
    try:
        r = await client.post(
            "/v1/check", json=CHECK, headers={**tokens["check"], "X-Request-ID": "traced-1"}
        )
        assert r.status_code == 200
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    access = [line for line in lines if line["logger"] == "aclaudit.access"]
    assert access and access[-1]["request_id"] == "traced-1"
    assert access[-1]["status"] == 200 and access[-1]["msg"] == "POST /v1/check 200"
    assert isinstance(access[-1]["duration_ms"], float)


def test_json_formatter_writes_one_object_per_line_with_exceptions():
    token = request_id_var.set("rid-9")
    try:
        try:
            raise ValueError("bad\nthing")
        except ValueError:
            record = logging.getLogger("x").makeRecord(
                "x", logging.ERROR, __file__, 1, "failed %s", ("here",), sys.exc_info()
            )
        line = JsonFormatter().format(record)
    finally:
        request_id_var.reset(token)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["msg"] == "failed here"
    assert parsed["request_id"] == "rid-9"
    assert parsed["level"] == "error"
    assert parsed["exc_type"] == "ValueError"
    assert parsed["exc"].endswith("ValueError: bad\nthing")


async def test_admin_trail_records_the_request_id(client, admin):
    r = await client.put(
        "/v1/groups/eng/members",
        json={"members": ["user:a"]},
        headers={**admin, "X-Request-ID": "change-42"},
    )
    assert r.status_code == 200, r.text
    trail = (await client.get("/v1/admin/trail?limit=10", headers=admin)).json()["items"]
    mine = [t for t in trail if t["path"] == "/v1/groups/eng/members"]
    assert mine and mine[0]["request_id"] == "change-42"


def test_log_level_must_be_a_level():
    assert Settings(log_level="debug").log_level == "DEBUG"
    with pytest.raises(ValueError, match="ACLAUDIT_LOG_LEVEL"):
        Settings(log_level="verbose")


async def test_access_lines_can_be_turned_off(database_url: str, caplog):
    app = create_app(Settings(database_url=database_url, access_log=False, sweeper_enabled=False))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            with caplog.at_level(logging.INFO, logger="aclaudit.access"):
                r = await client.get("/healthz", headers={"X-Request-ID": "quiet-1"})
    assert r.headers["x-request-id"] == "quiet-1"
    assert not [rec for rec in caplog.records if rec.name == "aclaudit.access"]
