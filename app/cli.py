"""The ``aclaudit`` command. Every command that touches the database migrates it first."""

import asyncio
import dataclasses
import getpass
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar
from urllib.parse import urlencode

import typer
import uvicorn
from pydantic import ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import chain, migrate
from app.auth import service as auth_service
from app.auth.oidc.dev_cli import dev_idp
from app.auth.scopes import Scope
from app.config import Settings, get_settings
from app.db import begin_write, create_engine, create_sessionmaker
from app.errors import AppError
from app.plans.cli import fail, policy_cli
from app.policy.casbin_model import MODEL_PATH, ModelMismatch, require_model
from app.reports.cli import report

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # read by prometheus-client when it is imported

cli = typer.Typer(
    help="aclaudit: access-control audit for training datasets.", no_args_is_help=True
)
db_cli = typer.Typer(help="Database schema.", no_args_is_help=True)
token_cli = typer.Typer(help="API tokens.", no_args_is_help=True)
cli.add_typer(db_cli, name="db")
log_cli = typer.Typer(help="The access log.", no_args_is_help=True)
cli.add_typer(token_cli, name="token")
cli.add_typer(log_cli, name="log")
cli.add_typer(policy_cli, name="policy")
scim_cli = typer.Typer(help="The IdP's SCIM provisioning (/scim/v2).", no_args_is_help=True)
cli.add_typer(scim_cli, name="scim")

cli.command("dev-idp")(dev_idp)  # a development OpenID Connect issuer: not for production
cli.command("report")(report)  # the incident report (app.reports)

T = TypeVar("T")


def _settings() -> Settings:
    try:
        return get_settings()
    except ValidationError as exc:  # its text would repeat the values, passwords included
        problems = "; ".join(
            f"ACLAUDIT_{'_'.join(str(part) for part in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors()
        )
        fail(f"configuration error: {problems}")
    except ValueError as exc:
        fail(f"configuration error: {exc}")


def _shown(url: str) -> str:
    """A database URL fit for a message: its password masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(ACLAUDIT_DATABASE_URL)"


def _upgraded(settings: Settings) -> None:
    try:
        migrate.upgrade(settings.database_url)
    except Exception as exc:
        fail(
            f"could not migrate the database at {_shown(settings.database_url)!r}: {exc}. "
            "Check ACLAUDIT_DATABASE_URL and that the database is reachable."
        )


def _operator() -> str:
    """Who runs a command, as the admin trail names it (CLI commands have no token)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"cli:{user}"[:128]


async def _record(session: AsyncSession, command: str, query: dict[str, str], status: int) -> None:
    """The command's admin-trail entry: method ``CLI``, path ``aclaudit <command>``, and the
    status the API would have answered (200, or the refusal's)."""
    await auth_service.record_trail(
        session,
        token_name=_operator(),
        token_id=None,
        method="CLI",
        path=f"aclaudit {command}",
        query=urlencode(query),
        status=status,
        request_id=None,
    )


async def _record_alone(
    maker: async_sessionmaker[AsyncSession], command: str, query: dict[str, str], status: int
) -> None:
    async with maker() as session, session.begin():
        await begin_write(session)
        await _record(session, command, query, status)


def _migrated() -> Settings:
    """The settings, with the database migrated to the newest schema (or exit 2, saying why)."""
    settings = _settings()
    _upgraded(settings)
    return settings


def _run(settings: Settings, work: Callable[[async_sessionmaker[AsyncSession]], Awaitable[T]]) -> T:
    """`work` with sessions of a database engine made for it, disposed after; a refusal
    (`AppError`) ends the command with its message (exit 2)."""

    async def run() -> T:
        engine = create_engine(settings)
        try:
            return await work(create_sessionmaker(engine, chain_key=settings.checkpoint_key_bytes))
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except AppError as exc:
        fail(exc.detail)


def _in_session(
    settings: Settings,
    work: Callable[[AsyncSession], Awaitable[T]],
    command: str,
    query: dict[str, str] | None = None,
) -> T:
    """`work` in one write transaction, committed with its admin-trail entry (a refusal is
    recorded on its own)."""
    return _run(settings, lambda maker: _recorded(maker, work, command, query or {}))


async def _recorded(
    maker: async_sessionmaker[AsyncSession],
    work: Callable[[AsyncSession], Awaitable[T]],
    command: str,
    query: dict[str, str],
) -> T:
    try:
        async with maker() as session, session.begin():
            await begin_write(session)
            result = await work(session)
            await _record(session, command, query, 200)
            return result
    except AppError as exc:
        await _record_alone(maker, command, query, exc.status)
        raise


def _progress(stage: str, done: int, total: int) -> None:
    end = "\n" if done == total else ""
    sys.stderr.write(f"\r  {stage:<9} {done:>5}/{total}{end}")
    sys.stderr.flush()


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
) -> None:
    """Apply migrations, then serve the API."""
    from app.operations.logs import log_config

    # Served, a worker that can no longer make the log durable stops, to be restarted.
    os.environ.setdefault("ACLAUDIT_EXIT_ON_LOG_FAILURE", "true")
    settings = _settings()
    try:
        require_model(settings.casbin_model or MODEL_PATH)
    except ModelMismatch as exc:
        fail(str(exc))
    _upgraded(settings)
    metrics_dir, made = _metrics_dir()
    typer.echo(f"aclaudit listening on http://{host}:{port} (API docs at /docs)", err=True)
    typer.echo("get a token with: aclaudit token create --name NAME --scope admin", err=True)
    if not settings.checkpoint_key:
        typer.secho(
            "note: access-log checkpoints are unsigned (set ACLAUDIT_CHECKPOINT_KEY); anyone who "
            "can write the database could rewrite the log and its checkpoints together, so copy "
            "GET /v1/access-log/checkpoints out of the service regularly to anchor it",
            fg=typer.colors.YELLOW,
            err=True,
        )
    try:
        uvicorn.run(
            "app.main:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_config=log_config(settings.log_level),
            log_level=settings.log_level.lower(),
            access_log=False,  # the app logs one JSON line per request, with its request id
            timeout_graceful_shutdown=10,
        )
    finally:
        if made:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _metrics_dir() -> tuple[Path, bool]:
    """Where the workers' metric files go (``PROMETHEUS_MULTIPROC_DIR``), emptied at start.

    Set before any worker imports prometheus-client; the workers inherit it. Without one
    configured, a private temporary directory is made (and removed on exit).
    """
    configured = os.environ.get(MULTIPROC_ENV)
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):  # a previous run's counts must not carry over
            stale.unlink()
        return path, False
    path = Path(tempfile.mkdtemp(prefix="aclaudit-metrics-"))
    os.environ[MULTIPROC_ENV] = str(path)
    return path, True


@db_cli.command("upgrade")
def db_upgrade() -> None:
    """Apply pending migrations."""
    _migrated()
    typer.echo("database is at the newest schema", err=True)


@token_cli.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="Who or what uses it; shown in logs and the trail.")],
    scope: Annotated[
        list[str],
        typer.Option(
            help="check, audit:read, policy:write, alerts:read, metrics:read, scim or admin."
        ),
    ],
) -> None:
    """Create a token and print it (alone, on stdout). Only its hash is stored."""
    settings = _migrated()
    token = _in_session(
        settings,
        lambda s: auth_service.create_token(s, name=name, scopes=list(scope)),
        "token create",
        {"name": name, "scope": ",".join(scope)},
    )
    typer.echo(token)


@scim_cli.command("token")
def scim_token(
    name: Annotated[
        str, typer.Option(help="The IdP (okta, entra ...): named in the trail and the history.")
    ],
) -> None:
    """Create a token with the `scim` scope for an IdP and print it (alone, on stdout). Give
    the IdP this service's URL followed by /scim/v2, and this token as its bearer token."""
    settings = _migrated()
    token = _in_session(
        settings,
        lambda s: auth_service.create_token(s, name=name, scopes=[Scope.scim.value]),
        "scim token",
        {"name": name},
    )
    typer.echo(token)


@token_cli.command("revoke")
def token_revoke(name: Annotated[str, typer.Option(help="The token's name.")]) -> None:
    """Revoke a token: it stops working at once."""
    settings = _migrated()
    _in_session(
        settings, lambda s: auth_service.revoke_token(s, name=name), "token revoke", {"name": name}
    )
    typer.echo(f"revoked {name}", err=True)


@cli.command()
def demo() -> None:
    """Load the demo organisation (idempotent)."""
    from app import demo as demo_org
    from app import demo_story

    settings = _migrated()
    typer.echo("loading the demo organisation ...", err=True)

    async def load(maker: async_sessionmaker[AsyncSession]) -> tuple[dict[str, int], int]:
        # A fresh database gets it as a history, each step committed at its past instant by
        # whoever made it (`policy_versions.by`); this run's trail entry follows, at the real
        # instant. Otherwise it is re-asserted now, with the entry in the same transaction.
        try:
            told = await demo_story.tell(maker, _progress)
        except AppError as exc:
            await _record_alone(maker, "demo", {}, exc.status)
            raise
        if told is None:
            counts = await _recorded(maker, lambda s: demo_org.load(s, _progress), "demo", {})
        else:
            await _record_alone(maker, "demo", {}, 200)
            counts = told
        return counts, await demo_org.record_reads(maker, settings, _progress)

    counts, reads = _run(settings, load)
    typer.echo(
        f"demo loaded: {counts['users']} employees in {counts['groups']} groups, "
        f"{counts['datasets']} datasets, {counts['grants_created']} new grants, "
        f"{reads} recorded reads",
        err=True,
    )
    typer.echo(
        "try: GET /v1/findings?status=open  (the group:all-employees grant is critical)", err=True
    )


@log_cli.command("verify")
def log_verify(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    anchor_id: Annotated[
        int | None, typer.Option(help="A copied-out checkpoint's entry id.")
    ] = None,
    anchor_hash: Annotated[str | None, typer.Option(help="That checkpoint's head hash.")] = None,
    archive: Annotated[
        Path | None,
        typer.Option(
            help="The directory `aclaudit log archive` wrote to: verify its segments too, "
            "as one chain with the database's entries."
        ),
    ] = None,
) -> None:
    """Recompute the hash chain and check it against the head and checkpoints (exit 1 if bad)."""
    from app.accesslog import archiver, repository
    from app.accesslog.integrity import Integrity
    from app.accesslog.schemas import VerifyResult

    if (anchor_id is None) != (anchor_hash is None):
        fail("--anchor-id and --anchor-hash go together: give both, copied from one checkpoint")
    anchor = None
    if anchor_id is not None and anchor_hash is not None:
        if anchor_id < 1 or not re.fullmatch(chain.HASH_PATTERN, anchor_hash):
            fail(
                "an anchor is a checkpoint's entry id (1 or more) and its head hash (64 "
                "lower-case hex digits), as GET /v1/access-log/checkpoints lists them"
            )
        anchor = (anchor_id, anchor_hash)
    settings = _migrated()
    typer.echo("verifying the access log ...", err=True)

    async def verify(
        maker: async_sessionmaker[AsyncSession],
    ) -> tuple[VerifyResult, archiver.ArchiveVerified | None]:
        archived = None
        if archive is not None:
            async with maker() as session:
                records = await repository.archive_records(session)
            typer.echo(f"verifying {len(records)} archived segments in {archive} ...", err=True)
            archived = await asyncio.to_thread(
                archiver.check_archive,
                records,
                archive,
                settings.checkpoint_key_bytes,
                settings.checkpoint_key_since,
                lambda line: typer.echo(line, err=True),
            )
        result = await Integrity(maker, settings).verify(caller="cli", anchor=anchor, full=True)
        shown = {} if anchor is None else {"anchor_id": str(anchor[0]), "anchor_hash": anchor[1]}
        if archive is not None:
            shown["archive"] = str(archive)
        await _record_alone(maker, "log verify", shown, 200)
        return result, archived

    result, archived = _run(settings, verify)
    is_ok = result.ok and (archived is None or archived.ok)
    if as_json:
        doc = result.model_dump(mode="json")
        if archived is not None:
            doc["ok"] = is_ok
            doc["archive"] = dataclasses.asdict(archived)
        typer.echo(json.dumps(doc))
    elif archived is not None and not archived.ok:
        typer.echo(f"TAMPERED: archive: segment {archived.segment}: {archived.problem}")
    if not as_json and is_ok:
        where = ""
        if result.archived is not None:
            checked = "verified" if archived is not None else "recorded, not read"
            where = (
                f" ({result.archived.entries} of them in {result.archived.segments} archived "
                f"segments, {checked})"
            )
        typer.echo(
            f"ok: {result.entries} entries{where}, head {result.head}, {result.checkpoints} "
            "checkpoints; the admin trail and the alert feed are intact"
        )
    for failed in (c for c in result.chains if not c.ok):
        noun = "entry" if failed.chain == chain.ACCESS_LOG else "row"
        at = "" if failed.first_bad_id is None else f"first bad {noun} {failed.first_bad_id}: "
        typer.echo(f"TAMPERED: {failed.chain}: {at}{failed.problem}")
    raise typer.Exit(0 if is_ok else 1)


@log_cli.command("archive")
def log_archive(
    before: Annotated[
        str, typer.Option(help="An RFC 3339 instant: entries written before it are archived.")
    ],
    to: Annotated[Path, typer.Option("--to", help="The archive directory (one per database).")],
    segment_entries: Annotated[
        int,
        typer.Option(
            min=1,
            help="Entries per segment, at most (segments end at checkpoints; on SQLite at most "
            "100 000, so a drop never holds the write lock for long).",
        ),
    ] = 100_000,
) -> None:
    """Move the entries written before an instant into sealed, verified segments in a
    directory, then drop them from the database. Only ranges a checkpoint covers move; the
    chain stays verifiable (`aclaudit log verify --archive DIR`). Safe to interrupt and rerun."""
    from pydantic import TypeAdapter

    from app.accesslog import archiver
    from app.identifiers import UTCInstant

    try:
        instant = TypeAdapter(UTCInstant).validate_python(before)
    except ValidationError:
        fail("--before must be an RFC 3339 instant with an offset, e.g. 2026-01-01T00:00:00Z")
    settings = _migrated()
    typer.echo(f"archiving entries written before {instant.isoformat()} to {to} ...", err=True)

    def progress(line: str) -> None:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()

    async def run(maker: async_sessionmaker[AsyncSession]) -> archiver.Archived:
        query = {"before": instant.isoformat(), "to": str(to)}
        try:
            done = await archiver.archive(
                maker,
                settings,
                before=instant,
                directory=to,
                max_entries=segment_entries,
                progress=progress,
            )
        except AppError as exc:
            await _record_alone(maker, "log archive", query, exc.status)
            raise
        await _record_alone(maker, "log archive", query, 200)
        return done

    done = _run(settings, run)
    typer.echo(f"archived {done.entries} entries in {len(done.segments)} segments to {to}")


@cli.command()
def explain(
    principal: Annotated[str, typer.Option(help="e.g. user:alice")],
    dataset: Annotated[str, typer.Option(help="e.g. employee_activity.keystrokes")],
    action: Annotated[str, typer.Option(help="read, write or export")] = "read",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Why a principal may or may not act on a dataset: the decision and every grant behind it."""
    from pydantic import TypeAdapter, ValidationError

    from app.identifiers import Action, DatasetId, PrincipalId
    from app.policy import explain

    try:
        principal = TypeAdapter(PrincipalId).validate_python(principal)
        dataset = TypeAdapter(DatasetId).validate_python(dataset)
        act = Action(action)
    except ValidationError as exc:
        fail(f"invalid --principal or --dataset: {exc.errors()[0]['msg']}")
    except ValueError:
        fail("--action must be read, write or export")
    settings = _migrated()
    result = _in_session(
        settings,
        lambda s: explain.explain_now(s, principal, dataset, act),
        "explain",
        {"principal": principal, "dataset": dataset, "action": act.value},
    )
    if as_json:
        typer.echo(result.model_dump_json())
        return
    typer.echo(
        f"{result.decision.upper()} {principal} {act.value} {dataset} ({result.reason.code})"
    )
    if result.reason.via:
        typer.echo("  via " + " -> ".join(result.reason.via))
    for g in result.grants:
        typer.echo(f"  grant {g.grant_id}: {g.effect} {g.subject} on {g.resource}")
        for path in g.paths:
            typer.echo("    via " + " -> ".join(path))
        if not g.paths_complete:
            typer.echo(f"    (more paths than these {len(g.paths)})")
    if result.out_of_audience:
        typer.echo("  OUT OF AUDIENCE: this principal is not in the dataset's intended audience")


@cli.command()
def scan(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Re-analyse every dataset: open, refresh and resolve findings."""
    from app.exposure import scan as exposure_scan

    settings = _migrated()
    typer.echo("scanning every dataset ...", err=True)
    result = _in_session(settings, lambda s: exposure_scan.scan(s, actor=_operator()), "scan")
    if as_json:
        typer.echo(result.model_dump_json())
    else:
        typer.echo(
            f"scanned {result.datasets} datasets in {result.duration_ms:.0f} ms: "
            f"{result.opened} opened, {result.resolved} resolved, {result.open_findings} open"
        )


# Findings are read a page at a time, each page in a short transaction of its own.
FINDINGS_PAGE = 1000


@cli.command()
def findings(
    status: Annotated[str | None, typer.Option(help="open, accepted or resolved")] = "open",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """List every finding (which grant lets whom outside a dataset's audience read it), then
    how many on stderr."""
    from app.exposure import findings as exposure_findings
    from app.exposure.schemas import FindingRead

    if status not in (None, "open", "accepted", "resolved"):
        fail("--status must be open, accepted or resolved")
    settings = _migrated()
    query = {"status": status} if status else {}

    def show(page: list[FindingRead], first: bool) -> None:
        if as_json:
            items = ",".join(f.model_dump_json() for f in page)
            typer.echo(("[" if first else ",") + items, nl=False)
            return
        if first and page:
            typer.echo(
                f"{'ID':>5}  {'SEVERITY':<8}  {'STATUS':<8}  {'EXCESS':>6}  {'GRANT':>5}  "
                "DATASET / SUBJECT"
            )
        for f in page:
            typer.echo(
                f"{f.id:>5}  {f.severity.value:<8}  {f.status.value:<8}  {f.excess_count:>6}  "
                f"{f.grant_id or '-':>5}  {f.dataset} <- {f.principal}"
            )

    async def list_all(maker: async_sessionmaker[AsyncSession]) -> int:
        count, cursor = 0, None
        while True:
            async with maker() as session:
                page, cursor = await exposure_findings.list_findings(
                    session,
                    status=status,
                    severity=None,
                    dataset=None,
                    after_id=None if cursor is None else int(cursor),
                    limit=FINDINGS_PAGE,
                )
            show(page, first=count == 0)
            count += len(page)
            if cursor is None:
                await _record_alone(maker, "findings", query, 200)
                return count

    count = _run(settings, list_all)
    kind = f"{status} findings" if status else "findings"
    if as_json:
        typer.echo("]")
    elif not count:
        typer.echo(f"no {kind}")
        return
    typer.echo(f"{count} {kind}", err=True)


def main() -> None:
    cli()
