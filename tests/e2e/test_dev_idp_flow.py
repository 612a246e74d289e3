"""The README's sign-in demo with real processes: `aclaudit dev-idp` signs people in, `aclaudit
serve` trusts it, and a demo employee sees at `/v1/me/reads` who read their records."""

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.servers import ACLAUDIT, Server, free_port

pytestmark = pytest.mark.slow


def read_dev_idp(process: subprocess.Popen[str]) -> tuple[dict[str, str], dict[str, str]]:
    """(the exports it prints, token by principal), read up to its last token."""
    exports: dict[str, str] = {}
    tokens: dict[str, str] = {}
    principal = None
    assert process.stdout is not None
    for line in process.stdout:
        line = line.strip()
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            exports[name] = value.strip("'")
        elif line.startswith("# user:"):
            principal = line.split()[1]
        elif principal and line.startswith("ey"):
            tokens[principal], principal = line, None
            if len(tokens) == 3:
                return exports, tokens
    raise AssertionError("dev-idp printed no tokens")


@pytest.fixture
def dev_idp() -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    process = subprocess.Popen(
        [ACLAUDIT, "dev-idp", "--port", str(free_port())],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        yield read_dev_idp(process)
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=10)
        assert process.stdout is not None
        process.stdout.close()


def test_a_demo_employee_signed_in_by_dev_idp_sees_who_read_their_records(
    tmp_path: Path, dev_idp: tuple[dict[str, str], dict[str, str]]
) -> None:
    exports, tokens = dev_idp
    database_url = f"sqlite:///{tmp_path / 'demo.db'}"
    env = {**os.environ, "ACLAUDIT_DATABASE_URL": database_url}
    done = subprocess.run([ACLAUDIT, "demo"], env=env, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr
    server = Server(database_url, log=tmp_path / "serve.log", env=exports).start()
    try:
        [employee] = [p for p in tokens if p not in ("user:security.lead", "user:policy.admin")]

        def get(path: str, principal: str) -> httpx.Response:
            headers = {"Authorization": f"Bearer {tokens[principal]}"}
            return httpx.get(server.url + path, headers=headers, timeout=10)

        reads = get("/v1/me/reads", employee)
        assert reads.status_code == 200, reads.text
        assert reads.json()["items"], "the demo's reads returned this employee's records"
        assert get("/v1/findings", employee).status_code == 403
        assert get("/v1/findings", "user:security.lead").status_code == 200
        assert get("/v1/findings", "user:policy.admin").status_code == 403
    finally:
        server.stop()
