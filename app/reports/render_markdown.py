"""The incident report as Markdown (for a ticket or a chat). Every user-controlled string
(principal, dataset and group names, purposes, token names) is escaped: HTML special
characters become entities and Markdown's table and emphasis characters are backslashed."""

import html
import re
from collections.abc import Callable
from datetime import datetime

from app.reports.schemas import (
    DatasetReport,
    ExposureReport,
    IntegrityRead,
    PolicyChangeRead,
    WindowRead,
)

Escape = Callable[[object], str]
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+!|~>-])")


def text(value: object) -> str:
    """`value` safe inside Markdown text and table cells."""
    flat = " ".join(str(value).split())
    return _MARKDOWN.sub(r"\\\1", html.escape(flat, quote=False))


def instant(value: datetime | None, missing: str = "open") -> str:
    return missing if value is None else value.isoformat().replace("+00:00", "Z")


def describe(change: PolicyChangeRead, esc: Escape = text) -> str:
    """One change in words (escaped by `esc`), e.g. grant 12 added: group:all allow read on ea.*."""
    who = "" if change.by is None else f" by {esc(change.by)}"
    version = "" if change.version is None else f" (v{change.version})"
    if change.kind.startswith("grant_"):
        verb = change.kind.removeprefix("grant_")
        what = f"grant {change.grant_id} {verb}"
        if change.principal is not None:
            what += f": {esc(change.principal)} {esc(change.effect)} on {esc(change.resource)}"
    elif change.kind.startswith("member_"):
        verb = "added to" if change.kind == "member_added" else "removed from"
        what = f"{esc(change.member)} {verb} {esc(change.group)}"
    elif change.kind.startswith("hold_"):
        verb = change.kind.removeprefix("hold_")
        what = f"hold {change.hold_id} {verb}: {esc(change.principal)} on {esc(change.resource)}"
    elif change.kind == "audience_set":
        what = f"audience of {esc(change.resource)} set to " + ", ".join(
            esc(p) for p in change.audience or []
        )
    else:
        what = f"{esc(change.resource)} unregistered"
    return f"{what}{who}{version}"


SHOWN_CHANGES = 8  # per window end in the renderings (the JSON lists them all)


def shown(items: list[PolicyChangeRead], esc: Escape = text) -> list[str]:
    """The first changes described, and how many more there are."""
    lines = [describe(c, esc) for c in items[:SHOWN_CHANGES]]
    if len(items) > SHOWN_CHANGES:
        lines.append(f"and {len(items) - SHOWN_CHANGES} more changes of the same versions")
    return lines


def changes(items: list[PolicyChangeRead], none: str) -> str:
    return "; ".join(shown(items)) or none


def _window_row(window: WindowRead) -> str:
    opened = "open before the period" if window.open_at_since else changes(window.opened_by, "-")
    return (
        f"| {instant(window.start)} | {instant(window.end)} | {window.peak_excess} | "
        f"{opened} | {changes(window.closed_by, '-')} |"
    )


def _dataset(report: DatasetReport) -> list[str]:
    could, did = report.who_could, report.who_did
    lines = [f"## {text(report.dataset)}", ""]
    if not report.windows:
        lines += ["Not readable beyond its intended audience at any point of the period.", ""]
    else:
        lines += [
            "### Exposure windows",
            "",
            "| Start | End | Peak excess | Opened by | Closed by |",
            "| --- | --- | ---: | --- | --- |",
            *(_window_row(w) for w in report.windows),
            "",
        ]
    lines += [
        "### Who could read it",
        "",
        f"- Beyond the audience at the peak: **{could.peak_excess}** "
        f"({instant(could.peak_at, '-')}); at any point: **{could.ever_excess}**",
        f"- At the end of the period: {could.effective_at_until} could read it, "
        f"{could.intended_at_until} meant to, **{could.excess_at_until}** beyond the audience",
        "",
    ]
    if could.principals:
        lines += ["| Principal | First exposed | Still at end |", "| --- | --- | --- |"]
        lines += [
            f"| {text(p.principal)} | {instant(p.first_exposed_at)} | "
            f"{'yes' if p.at_until else 'no'} |"
            for p in could.principals
        ]
        if len(could.principals) < could.ever_excess:
            lines.append(f"\n({len(could.principals)} of {could.ever_excess} listed.)")
        lines.append("")
    lines += ["### Who did", ""]
    if not did.principals:
        lines.append("No checks of this dataset in the period (in the database).")
    else:
        lines += [
            "| Principal | Reads | Allowed | Out of audience | First | Last | Purposes |",
            "| --- | ---: | ---: | ---: | --- | --- | --- |",
        ]
        for p in did.principals:
            purposes = ", ".join(f"{text(u.purpose or '(none)')} ({u.reads})" for u in p.purposes)
            lines.append(
                f"| {text(p.principal)} | {p.reads} | {p.allowed} | {p.out_of_audience} | "
                f"{instant(p.first_at)} | {instant(p.last_at)} | {purposes} |"
            )
    if did.archived_out_of_audience_reads:
        lines.append(
            f"\nPlus {did.archived_out_of_audience_reads} out-of-audience reads in archived "
            "segments overlapping the period (not broken down by principal)."
        )
    return [*lines, ""]


def integrity_statement(integrity: IntegrityRead, esc: Escape = text) -> str:
    """The integrity of the log over the period, in one paragraph: every field read from the
    database is escaped (whoever edited the log can write the checkpoints too)."""
    if integrity.ok:
        verdict = "The access log verified intact"
        if integrity.verified_through is not None:
            verdict += (
                f" over entries {integrity.verified_after} (exclusive) to "
                f"{integrity.verified_through}: {integrity.entries} entries recomputed"
            )
        if integrity.head_id is not None:
            verdict += f", linked to the head at entry {integrity.head_id}"
            verdict += "" if integrity.head is None else f" ({esc(integrity.head)})"
    else:
        where = "" if integrity.first_bad_id is None else f" at entry {integrity.first_bad_id}"
        verdict = f"The access log FAILED verification{where}: {esc(integrity.problem or '')}"
    if integrity.period_first_entry is None:
        period = "No entries were written in the period."
    else:
        period = (
            f"The period's entries are {integrity.period_first_entry} to "
            f"{integrity.period_last_entry}."
        )
    anchors = []
    for label, anchor in (
        ("before the period", integrity.checkpoint_before),
        ("covering its end", integrity.checkpoint_covering),
    ):
        if anchor is None:
            anchors.append(f"no checkpoint {label}")
        else:
            signed = "signed" if anchor.signature else "unsigned"
            anchors.append(
                f"checkpoint {label}: entry {anchor.entry_id}, {esc(anchor.head_hash)} "
                f"({signed}, {instant(anchor.at)})"
            )
    archived = ""
    if integrity.archived_through is not None:
        segments = ", ".join(esc(name) for name in integrity.archived_segments)
        overlapping = f" (segments overlapping the period: {segments})" if segments else ""
        archived = (
            f" Entries up to {integrity.archived_through} were archived out of the "
            f"database{overlapping}."
        )
    return f"{verdict}. {period} Anchors: {'; '.join(anchors)}.{archived}"


def render(report: ExposureReport) -> str:
    lines = [
        f"# Exposure report: {text(report.pattern)}",
        "",
        f"Period {instant(report.since)} to {instant(report.until)}; "
        f"generated {instant(report.generated_at)}.",
        "",
    ]
    if not report.datasets:
        lines += [f"No dataset matching {text(report.pattern)} was registered in the period.", ""]
    for dataset in report.datasets:
        lines += _dataset(dataset)
    lines += ["## Integrity", "", integrity_statement(report.integrity), ""]
    if report.next_cursor is not None:
        lines += [f"(More principals could read: continue with cursor {text(report.next_cursor)}.)"]
    return "\n".join(lines).rstrip() + "\n"
