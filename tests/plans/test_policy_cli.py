"""`aclaudit policy plan|apply` against a real server, with the example policy file."""

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.servers import ACLAUDIT, Server

EXAMPLE = Path(__file__).resolve().parents[2] / "policies" / "employee_activity.toml"
OVER_BROAD = """
[[grants]]
principal = "group:all-employees"
resource = "employee_activity.*"
action = "read"
justification = "everyone wants to see the dashboards"
expires_at = 2999-01-31T00:00:00Z
"""


class Cli:
    """Runs ``aclaudit policy ...`` against a real server with a token of the given scope."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.env = {**os.environ, "ACLAUDIT_DATABASE_URL": server.database_url}
        self.tokens = {scope: self._token(scope) for scope in ("audit:read", "policy:write")}

    def _token(self, scope: str) -> str:
        created = subprocess.run(
            [ACLAUDIT, "token", "create", "--name", scope.replace(":", "-"), "--scope", scope],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return created.stdout.strip()

    def __call__(self, *args: str, scope: str = "policy:write") -> subprocess.CompletedProcess[str]:
        env = self.env | {"ACLAUDIT_URL": self.server.url, "ACLAUDIT_TOKEN": self.tokens[scope]}
        return subprocess.run([ACLAUDIT, "policy", *args], env=env, capture_output=True, text=True)


@pytest.fixture
def aclaudit(tmp_path: Path) -> Iterator[Cli]:
    server = Server(f"sqlite:///{tmp_path / 'aclaudit.db'}").start()
    try:
        yield Cli(server)
    finally:
        server.stop()


def test_plan_apply_and_the_guard_from_the_command_line(aclaudit: Cli, tmp_path: Path) -> None:
    planned = aclaudit("plan", str(EXAMPLE))
    assert planned.returncode == 0, planned.stderr
    assert "datasets: 4 would change" in planned.stdout
    assert "+ allow group:mci-research read employee_activity.*" in planned.stdout

    applied = aclaudit("apply", str(EXAMPLE))
    assert applied.returncode == 0, applied.stderr
    assert "grants: 3 created, 0 revoked" in applied.stdout
    again = aclaudit("plan", str(EXAMPLE), "--json")
    assert again.returncode == 0 and '"grants_created": []' in again.stdout

    wider = tmp_path / "wider.toml"
    wider.write_text(EXAMPLE.read_text() + OVER_BROAD + '[groups]\nall-employees = ["user:eve"]\n')
    refused = aclaudit("plan", str(wider))
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "REFUSED" in refused.stdout and "group:all-employees" in refused.stdout
    refused = aclaudit("apply", str(wider))
    assert refused.returncode == 1 and "REFUSED" in refused.stdout
    assert "grants: 0 created" in aclaudit("plan", str(EXAMPLE)).stdout

    # Lowering a block guard changes no finding, but apply would refuse it: plan says so.
    audience = 'intended_audience = ["group:mci-research", "service:trainer"]\n'
    lowered = tmp_path / "lowered.toml"
    lowered.write_text(EXAMPLE.read_text().replace(audience, audience + 'guard = "alert"\n', 1))
    planned = aclaudit("plan", str(lowered))
    assert planned.returncode == 1, planned.stdout + planned.stderr
    assert "guard employee_activity.keystrokes: block -> alert" in planned.stdout
    assert "REFUSED" in planned.stdout
    refused = aclaudit("apply", str(lowered))
    assert refused.returncode == 1 and "REFUSED" in refused.stdout


def test_errors_say_what_to_do(aclaudit: Cli, tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[[grants]]\nprincipal = 'nobody'\nresource = 'x'\naction = 'read'\n")
    result = aclaudit("apply", str(broken))
    assert result.returncode == 2 and "body.grants.0.principal" in result.stderr
    broken.write_text("not = toml = at all")
    result = aclaudit("plan", str(broken))
    assert result.returncode == 2 and "cannot read" in result.stderr
    result = aclaudit("plan", str(EXAMPLE), "--url", "http://127.0.0.1:9")
    assert result.returncode == 2 and "cannot reach aclaudit" in result.stderr
    result = aclaudit("plan", str(EXAMPLE), scope="audit:read")
    assert result.returncode == 2 and "policy:write" in result.stderr


def test_export_prints_the_applied_policy_in_casbin_format(aclaudit: Cli) -> None:
    assert aclaudit("apply", str(EXAMPLE)).returncode == 0
    exported = aclaudit("export", "--casbin", scope="audit:read")
    assert exported.returncode == 0, exported.stderr
    lines = exported.stdout.splitlines()
    assert lines[0].startswith("# aclaudit policy, version ")
    assert any(
        line.startswith("p, group:mci-research, employee_activity.*, read, model-training, allow, ")
        for line in lines
    ), lines
    unnamed = aclaudit("export", scope="audit:read")
    assert unnamed.returncode == 2 and "--casbin" in unnamed.stderr
    refused = aclaudit("export", "--casbin", scope="policy:write")  # no audit:read
    assert refused.returncode == 2 and "403" in refused.stderr
