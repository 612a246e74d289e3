"""Cerbos, the comparison point: install, policies equivalent to aclaudit's, requests, server.

How the aclaudit policy maps onto Cerbos
-----------------------------------------
aclaudit (Casbin) lets a principal read a dataset when some grant to the principal or to a group
it reaches matches the dataset and no such matching grant is a deny. Cerbos gets:

* Request: ``principal.id`` = the aclaudit principal; ``principal.roles`` and
  ``principal.attr.groups`` = the principal itself plus every group it reaches (the caller resolves
  the directory, as a Cerbos deployment does with its identity provider's groups);
  ``resource.id`` = the dataset, ``resource.kind = "dataset:<first segment>"``; action ``read``.
* Policies: one resource policy per dataset family (kind ``dataset:d4``), one rule per grant. The
  resource test is ``R.id == "d4.t7"`` for an exact dataset and ``R.id.startsWith("d4.")`` for
  ``d4.*`` (Casbin's keyMatch is a raw prefix test on the text before the ``*``); ``*`` has none.
  A pattern whose prefix has no dot (``*``, ``d4*``) goes into every family it can match.

  - an allow grant to P: ``roles: [P]``, ``EFFECT_ALLOW``, condition = the resource test;
  - a deny grant to P: ``roles: ["*"]``, ``EFFECT_DENY``, condition
    ``"P" in P.attr.groups && <resource test>``.

Why denies use ``roles: ["*"]``: Cerbos resolves conflicts per role (a deny beats an allow only
within one role; across roles any allow wins), whereas in aclaudit a deny to any of the
principal's groups beats every allow. A deny rule that applies to every role, guarded by group
membership in its condition, denies under each of the principal's roles, so the overall answer is
a deny exactly when aclaudit's is. Allows are keyed by role so that Cerbos's rule index (by
kind, role, action) hands each request only the few rules of that principal's own groups; the
per-family policies keep the deny rules a request must evaluate to about denies / families.
(Putting every rule under one role with the group test in the condition gives the same answers
but makes Cerbos 0.55 evaluate ~100-10,000 conditions per request, and it slows down more than
linearly with that count: tens to thousands of times slower, which would measure the encoding
rather than the engine.)
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.procs import LOOPBACK, BenchError, Server, free_port, running
from bench.workload import ACTION, ALLOW, Check, Grant, Workload

CERBOS_VERSION = "0.55.0"
BENCH_DIR = Path(__file__).resolve().parent
TOOLS_DIR = BENCH_DIR / ".tools"
CONFIG = BENCH_DIR / "cerbos" / "config.yaml"
CHECK_PATH = "/api/check/resources"

_NPM_ARCH = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}


def package_name() -> str:
    machine = platform.machine().lower()
    arch = _NPM_ARCH.get(machine)
    if arch is None:
        raise BenchError(f"no Cerbos npm package for this machine ({machine})")
    return f"@cerbos/cerbos-linux-{arch}"


def binary(install: bool = True) -> Path:
    """The Cerbos executable from bench/.tools, installed with npm if it is missing."""
    package = package_name()
    path = TOOLS_DIR / "node_modules" / package / package.split("/")[1]
    if path.is_file():
        return path
    if not install:
        raise BenchError(f"Cerbos is not installed at {path}")
    npm = shutil.which("npm")
    if npm is None:
        raise BenchError("npm is needed to install Cerbos (apt-get install -y npm)")
    print(f"installing {package}@{CERBOS_VERSION} into {TOOLS_DIR} ...", flush=True)
    result = subprocess.run(
        [
            npm,
            "install",
            "--no-audit",
            "--no-fund",
            "--prefix",
            str(TOOLS_DIR),
            f"{package}@{CERBOS_VERSION}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0 or not path.is_file():
        raise BenchError(f"npm install {package} failed:\n{result.stdout}\n{result.stderr}")
    path.chmod(path.stat().st_mode | 0o111)
    return path


def family(dataset: str) -> str:
    return dataset.split(".", 1)[0]


def kind(dataset: str) -> str:
    return f"dataset:{family(dataset)}"


def _resource_test(resource: str) -> str | None:
    """CEL for Casbin's keyMatch(R.id, resource); None when it matches everything."""
    star = resource.find("*")
    if star == -1:
        return f"R.id == {json.dumps(resource)}"
    if star > 0:
        return f"R.id.startsWith({json.dumps(resource[:star])})"
    return None


def _rule(number: int, grant: Grant) -> dict[str, Any]:
    resource_test = _resource_test(grant.resource)
    if grant.effect == ALLOW:
        # Looked up by role: only the requesting principal's own roles reach it.
        rule: dict[str, Any] = {"roles": [grant.principal], "effect": "EFFECT_ALLOW"}
        tests = [resource_test] if resource_test else []
    else:
        # Every role of the principal must see the deny, or another role's allow would win.
        rule = {"roles": ["*"], "effect": "EFFECT_DENY"}
        tests = [f"{json.dumps(grant.principal)} in P.attr.groups"]
        tests += [resource_test] if resource_test else []
    rule = {"name": f"grant-{number}", "actions": [ACTION], **rule}
    if tests:
        rule["condition"] = {"match": {"expr": " && ".join(tests)}}
    return rule


def _families_for(resource: str, families: list[str]) -> list[str]:
    """The families (first dataset segments) whose datasets the grant's resource can match."""
    star = resource.find("*")
    prefix = resource if star == -1 else resource[:star]
    if "." in prefix:
        return [prefix.split(".", 1)[0]]
    if star == -1:  # an exact dataset id with a single segment
        return [prefix]
    return [f for f in families if f.startswith(prefix)]


def write_policies(workload: Workload, directory: Path) -> int:
    """One resource policy file per dataset family; returns how many files were written."""
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    families = sorted({family(d) for d in workload.org.datasets})
    rules: dict[str, list[dict[str, Any]]] = {f: [] for f in families}
    for number, grant in enumerate(workload.grants):
        rule = _rule(number, grant)
        for name in _families_for(grant.resource, families):
            rules.setdefault(name, []).append(rule)
    for name, family_rules in rules.items():
        policy = {
            "apiVersion": "api.cerbos.dev/v1",
            "resourcePolicy": {
                "version": "default",
                "resource": f"dataset:{name}",
                "rules": family_rules,
            },
        }
        # JSON is YAML; Cerbos reads .yaml files from the disk store.
        (directory / f"{name}.yaml").write_text(json.dumps(policy, indent=1) + "\n")
    return len(rules)


def request_body(workload: Workload, check: Check, request_id: str) -> dict[str, Any]:
    reaches = list(workload.reference.ancestors(check.principal))  # itself, then its groups
    return {
        "requestId": request_id,
        "principal": {"id": check.principal, "roles": reaches, "attr": {"groups": reaches}},
        "resources": [
            {"actions": [ACTION], "resource": {"kind": kind(check.dataset), "id": check.dataset}}
        ],
    }


def decision(response_json: dict[str, Any]) -> str:
    """aclaudit's vocabulary for Cerbos's answer: "allow" or "deny"."""
    effect = response_json["results"][0]["actions"][ACTION]
    return "allow" if effect == "EFFECT_ALLOW" else "deny"


@contextmanager
def serve(
    policy_dir: Path,
    work_dir: Path,
    *,
    gomaxprocs: int,
    ready_timeout: float = 120.0,
    cpus: str | None = None,
) -> Iterator[Server]:
    """Cerbos on loopback ports (on `cpus` only, when given), with bench/cerbos/config.yaml and
    the policies in policy_dir."""
    executable = binary()
    http_port, grpc_port, debug_port = free_port(), free_port(), free_port()
    audit_log = work_dir / "audit.log"
    audit_log.unlink(missing_ok=True)
    env = {**os.environ, "CERBOS_NO_TELEMETRY": "1"}
    if gomaxprocs > 0:
        env["GOMAXPROCS"] = str(gomaxprocs)
    argv = [
        str(executable),
        "server",
        f"--config={CONFIG}",
        "--log-level=warn",
        f"--debug-listen-addr={LOOPBACK}:{debug_port}",
        f"--set=server.httpListenAddr={LOOPBACK}:{http_port}",
        f"--set=server.grpcListenAddr={LOOPBACK}:{grpc_port}",
        f"--set=storage.disk.directory={policy_dir}",
        f"--set=audit.file.path={audit_log}",
    ]
    with running(
        "cerbos",
        argv,
        base_url=f"http://{LOOPBACK}:{http_port}",
        ready_path="/_cerbos/health",
        log_path=work_dir / "cerbos.log",
        env=env,
        cwd=BENCH_DIR.parent,
        ready_timeout=ready_timeout,
        cpus=cpus,
    ) as server:
        yield server
