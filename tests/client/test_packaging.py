"""The client stays a light dependency for data services, and fuzzed answers never allow."""

import json
import subprocess
import sys

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

import app.client
from app.client import AclauditClient, Retries
from tests.client.conftest import ALLOW

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)


def test_importing_the_client_needs_only_httpx_pydantic_and_the_standard_library():
    code = (
        "import sys, app.client; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('fastapi', 'starlette', 'sqlalchemy', 'casbin', 'alembic', 'asyncpg', 'aiosqlite')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_public_name_is_exported():
    assert sorted(app.client.__all__) == sorted(set(app.client.__all__))
    for name in app.client.__all__:
        assert getattr(app.client, name) is not None


def mutations() -> st.SearchStrategy[bytes]:
    """Raw bytes, arbitrary JSON, or a valid allow with one field replaced or removed."""
    field = st.sampled_from(sorted(ALLOW))
    replaced = st.tuples(field, JSON).map(lambda kv: {**ALLOW, kv[0]: kv[1]})
    removed = field.map(lambda k: {key: v for key, v in ALLOW.items() if key != k})
    as_json = (JSON | replaced | removed).map(lambda v: json.dumps(v).encode())
    return st.binary(max_size=64) | as_json


@settings(max_examples=300, deadline=None)
@given(body=mutations(), status=st.sampled_from([200, 200, 200, 201, 500, 502, 503, 504]))
def test_no_malformed_or_failed_answer_is_ever_an_allow(body: bytes, status: int):
    transport = httpx.MockTransport(lambda request: httpx.Response(status, content=body))
    with AclauditClient(
        "http://aclaudit.test", token="t", transport=transport, retries=Retries(attempts=1)
    ) as client:
        result = client.check("service:trainer", "employee_activity.keystrokes")
    if result.allowed:  # only a well-formed 200 allow, with its log entry, may allow
        assert status == 200 and result.recorded
        parsed = json.loads(body)
        assert parsed["decision"] == "allow" and parsed["allowed"] is True
        assert isinstance(parsed["access_log_id"], int) and 0 < parsed["access_log_id"] < 2**63
        assert parsed["reason"]["code"] == "granted" and parsed["decision_id"]
    else:
        assert result.decision == "deny"
