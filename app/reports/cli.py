"""``aclaudit report``: the incident report from the database, like the other commands for
security staff (findings, explain, log verify): migrated first, recorded in the admin trail."""

import sys
from pathlib import Path
from typing import Annotated

import typer
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.errors import AppError
from app.identifiers import ResourcePattern, UTCInstant
from app.plans.cli import fail
from app.reports import render_html, render_markdown
from app.reports.schemas import ExposureReport

FORMATS = ("json", "markdown", "html")


def _instant(option: str, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return TypeAdapter(UTCInstant).validate_python(value).isoformat()
    except ValidationError:
        fail(f"{option} must be an RFC 3339 instant with an offset, e.g. 2026-01-01T00:00:00Z")


def _progress(stage: str, done: int, total: int) -> None:
    end = "\n" if done == total else ""
    sys.stderr.write(f"\r  {stage:<7} {done:>7}/{total}{end}")
    sys.stderr.flush()


def report(
    dataset: Annotated[
        str, typer.Option(help="A dataset id or pattern, e.g. 'employee_activity.*'.")
    ],
    since: Annotated[
        str | None, typer.Option(help="RFC 3339; default: where the policy's history starts.")
    ] = None,
    until: Annotated[str | None, typer.Option(help="RFC 3339; default: now.")] = None,
    output_format: Annotated[
        str, typer.Option("--format", help="json, markdown or html (one self-contained page).")
    ] = "markdown",
    output: Annotated[
        Path | None, typer.Option("--output", help="Write to this file instead of stdout.")
    ] = None,
    top: Annotated[
        int | None,
        typer.Option(min=1, help="List only the first N principals who could read (default: all)."),
    ] = None,
    cursor: Annotated[
        str | None,
        typer.Option(help="Continue after the cursor a paged report ended with (same period)."),
    ] = None,
) -> None:
    """The incident report: when each matching dataset was readable beyond its audience (and
    which changes, by whom, opened and closed it), who could read it, who did, and the access
    log's integrity over the period."""
    from app import cli as main
    from app.accesslog.integrity import Integrity
    from app.accesslog.range_verifier import RangeVerified
    from app.reports import service

    if output_format not in FORMATS:
        fail("--format must be json, markdown or html")
    try:
        pattern = TypeAdapter(ResourcePattern).validate_python(dataset)
    except ValidationError:
        fail("--dataset must be a dataset id, a prefix pattern ending in .* or *")
    start, end = _instant("--since", since), _instant("--until", until)
    settings = main._migrated()
    typer.echo(f"reporting on {pattern} ...", err=True)
    query = {"dataset": pattern, **({"since": start} if start else {})}
    query.update({"until": end} if end else {})
    query.update({"cursor": cursor} if cursor else {})

    async def run(maker: async_sessionmaker[AsyncSession]) -> ExposureReport:
        async def verify(first: int | None, last: int) -> RangeVerified:
            typer.echo("  verifying the access log over the period ...", err=True)
            # at full speed: no checks share this process
            return await Integrity(maker, settings).verify_range(
                caller="cli", first=first, last=last, is_paced=False
            )

        adapter = TypeAdapter(UTCInstant)
        try:
            async with maker() as session:
                done = await service.exposure_report(
                    session,
                    pattern=pattern,
                    since=None if start is None else adapter.validate_python(start),
                    until=None if end is None else adapter.validate_python(end),
                    verify=verify,
                    cursor=cursor,
                    limit=top,
                    progress=_progress,
                )
        except AppError as exc:
            await main._record_alone(maker, "report", query, exc.status)
            raise
        await main._record_alone(maker, "report", query, 200)
        return done

    result = main._run(settings, run)
    if output_format == "json":
        rendered = result.model_dump_json(indent=2) + "\n"
    elif output_format == "html":
        rendered = render_html.render(result)
    else:
        rendered = render_markdown.render(result)
    if output is None:
        typer.echo(rendered, nl=False)
        return
    try:
        output.write_text(rendered, encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {output}: {exc}")
    windows = sum(len(d.windows) for d in result.datasets)
    typer.echo(f"wrote {output}: {len(result.datasets)} datasets, {windows} windows", err=True)
