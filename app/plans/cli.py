"""``aclaudit policy plan|apply FILE``: policy files through the API, with a scoped token.

Through the API rather than the database, so a policy CI job needs only a ``policy:write``
token and every plan and apply lands in the admin trail.
"""

import json
import tomllib
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer

policy_cli = typer.Typer(
    help="Policy files: plan and apply (policies/*.toml).", no_args_is_help=True
)

FileArg = Annotated[
    Path, typer.Argument(exists=True, dir_okay=False, help="A .toml or .json policy document.")
]
UrlOption = Annotated[
    str, typer.Option(envvar="ACLAUDIT_URL", help="The aclaudit service to talk to.")
]
TokenOption = Annotated[
    str,
    typer.Option(
        envvar="ACLAUDIT_TOKEN",
        help="Bearer token with policy:write. Prefer the environment variable: a command line "
        "is visible to other users.",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
REFUSED_EXIT = 1


def fail(message: str) -> NoReturn:
    """Print `message` as an error and exit 2 (every aclaudit command's way to refuse)."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _json_default(value: object) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__}")


def read_document(path: Path) -> dict[str, Any]:
    """The document in ``path`` as the JSON the API takes (TOML dates become ISO strings)."""
    try:
        if path.suffix == ".json":
            loaded = json.loads(path.read_text(encoding="utf-8"))
        else:
            loaded = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        fail(f"cannot read {path}: {exc}")
    if not isinstance(loaded, dict):
        fail(f"{path} must hold an object (groups, datasets, grants)")
    parsed: dict[str, Any] = json.loads(json.dumps(loaded, default=_json_default))
    return parsed


def _post(url: str, token: str, route: str, document: dict[str, Any]) -> httpx.Response:
    try:
        return httpx.post(
            f"{url.rstrip('/')}/v1/policy/{route}",
            json=document,
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(120.0, connect=5.0),
        )
    except httpx.HTTPError as exc:
        fail(f"cannot reach aclaudit at {url}: {exc}. Is it running? Set --url or ACLAUDIT_URL.")


def _finding_line(mark: str, finding: dict[str, Any]) -> str:
    return (
        f"    {mark} {finding['severity']:<8} {finding['dataset']} <- {finding['principal']} "
        f"(grant {finding.get('grant_id') or '-'}): {finding['excess_count']} outside the audience"
    )


def _grant_line(mark: str, grant: dict[str, Any]) -> str:
    expiry = f" until {grant['expires_at']}" if grant.get("expires_at") else ""
    return (
        f"    {mark} {grant['effect']} {grant['principal']} {grant['action']} "
        f"{grant['resource']}{expiry}"
    )


def _report(result: dict[str, Any], verb: str) -> None:
    lines = [f"datasets: {len(result['datasets_changed'])} {verb}"]
    lines += [f"    ~ {d}" for d in result["datasets_changed"]]
    for change in result.get("guards_changed", []):
        refused = " (REFUSED without accept_exposure)" if change["refused"] else ""
        lines.append(
            f"    guard {change['dataset']}: {change['old_guard']} -> {change['new_guard']}, "
            f"{len(change['findings'])} open finding(s){refused}"
        )
    lines.append(f"groups: {len(result['memberships_changed'])} {verb}")
    for change in result["memberships_changed"]:
        added = " ".join(f"+{m}" for m in change["added"])
        removed = " ".join(f"-{m}" for m in change["removed"])
        lines.append(f"    ~ {change['group']}: {' '.join(filter(None, [added, removed]))}")
    created, revoked = result["grants_created"], result["grants_revoked"]
    lines.append(f"grants: {len(created)} created, {len(revoked)} revoked")
    lines += [_grant_line("+", g) for g in created] + [_grant_line("-", g) for g in revoked]
    opened, resolved = result["findings_opened"], result["findings_resolved"]
    lines.append(f"findings: {len(opened)} opened, {len(resolved)} resolved")
    lines += [_finding_line("!", f) for f in opened] + [_finding_line("✓", f) for f in resolved]
    if result["refused"] or _guard_refused(result):
        lines.append(
            f"REFUSED: {len(result['refused'])} finding(s) on block-guarded datasets or guard "
            "changes; apply answers 409 unless the document carries accept_exposure"
        )
        lines += [_finding_line("✗", f) for f in result["refused"]]
    typer.echo("\n".join(lines))


def _guard_refused(result: dict[str, Any]) -> bool:
    return any(change["refused"] for change in result.get("guards_changed", []))


def _problem(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        fail(f"aclaudit answered {response.status_code} without a problem document")
    return body


@policy_cli.command("plan")
def plan(
    file: FileArg,
    url: UrlOption = "http://127.0.0.1:8000",
    token: TokenOption = "",
    as_json: JsonOption = False,
    fail_on_findings: Annotated[
        bool, typer.Option(help="Exit 1 also when the change would open any finding.")
    ] = False,
) -> None:
    """Show what applying FILE would change, open, resolve and refuse; change nothing.

    Exits 1 when apply would be refused (for policy CI), 2 on errors.
    """
    result = _call(url, token, "plan", read_document(file), as_json)
    if (
        result["refused"]
        or _guard_refused(result)
        or (fail_on_findings and result["findings_opened"])
    ):
        raise typer.Exit(REFUSED_EXIT)


@policy_cli.command("apply")
def apply(
    file: FileArg,
    url: UrlOption = "http://127.0.0.1:8000",
    token: TokenOption = "",
    as_json: JsonOption = False,
) -> None:
    """Make the groups, datasets and grants FILE names what it states, all or nothing.

    Exits 1 when the block guard refuses it, 2 on errors.
    """
    _call(url, token, "apply", read_document(file), as_json)


def _call(url: str, token: str, route: str, document: dict[str, Any], as_json: bool) -> Any:
    if not token:
        fail("no token: set ACLAUDIT_TOKEN (create one with: aclaudit token create ...)")
    response = _post(url, token, route, document)
    if response.status_code == 200:
        result = response.json()
        if as_json:
            typer.echo(json.dumps(result))
        else:
            _report(result, "would change" if route == "plan" else "changed")
        return result
    problem = _problem(response)
    if as_json:
        typer.echo(json.dumps(problem))
    if response.status_code == 409 and "findings" in problem:
        if not as_json:
            typer.echo(f"REFUSED: {problem.get('detail', '')}")
            for finding in problem["findings"]:
                typer.echo(_finding_line("✗", finding))
        raise typer.Exit(REFUSED_EXIT)
    fail(f"{route} failed ({response.status_code}): {problem.get('detail', problem)}")


@policy_cli.command("export")
def export(
    casbin: Annotated[
        bool, typer.Option("--casbin", help="Casbin's CSV policy format (p and g lines).")
    ] = False,
    url: UrlOption = "http://127.0.0.1:8000",
    token: Annotated[
        str,
        typer.Option(
            envvar="ACLAUDIT_TOKEN",
            help="Bearer token with audit:read (prefer the environment variable).",
        ),
    ] = "",
) -> None:
    """Print the live policy (GET /v1/policy/casbin): load it into any Casbin enforcer with
    policies/model.conf to decide as the service does."""
    if not casbin:
        fail("name the format: --casbin (the only one so far)")
    if not token:
        fail("no token: set ACLAUDIT_TOKEN (create one with: aclaudit token create ...)")
    try:
        response = httpx.get(
            f"{url.rstrip('/')}/v1/policy/casbin",
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(120.0, connect=5.0),
        )
    except httpx.HTTPError as exc:
        fail(f"cannot reach aclaudit at {url}: {exc}. Is it running? Set --url or ACLAUDIT_URL.")
    if response.status_code != 200:
        fail(f"export failed ({response.status_code}): {_problem(response).get('detail')}")
    typer.echo(response.text, nl=False)
