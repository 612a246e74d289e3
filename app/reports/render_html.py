"""The incident report as one self-contained HTML page (to attach to an incident ticket): no
external resource (inline CSS, an inline SVG timeline, no script), and every user-controlled
string HTML-escaped (`esc`), attributes included. Numbers carry ``data-field`` attributes so a
browser test can read them back and compare them with the JSON."""

import html
from datetime import datetime

from app.reports.render_markdown import instant, integrity_statement, shown
from app.reports.schemas import DatasetReport, ExposureReport, PolicyChangeRead, WindowRead

WIDTH, BAR_Y, BAR_H = 900, 24, 22

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;
max-width:1000px;color:#1d2330;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{margin-top:2.2rem;border-bottom:2px solid #d8dde6;
padding-bottom:.2rem}h3{font-size:1.05rem;margin:1.3rem 0 .4rem}
.meta{color:#5b6475}table{border-collapse:collapse;width:100%;margin:.4rem 0 1rem}
th,td{border:1px solid #d8dde6;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f1f3f7}td.n{text-align:right;font-variant-numeric:tabular-nums}
.bad{color:#a4161a;font-weight:600}.ok{color:#1b6e3a;font-weight:600}
.stat{display:inline-block;margin-right:1.5rem}.stat b{font-size:1.2rem}
svg{display:block;margin:.3rem 0 .8rem;max-width:100%}
.integrity{padding:.7rem 1rem;border-left:4px solid #1b6e3a;background:#f3faf5}
.integrity.failed{border-color:#a4161a;background:#fdf2f2}
"""


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _num(field: str, value: int) -> str:
    return f'<td class="n" data-field="{field}">{value}</td>'


def _when(field: str, value: datetime | None, missing: str = "open") -> str:
    return f'<td data-field="{field}">{esc(instant(value, missing))}</td>'


def _changes(items: list[PolicyChangeRead]) -> str:
    return "<br>".join(shown(items, esc)) or "-"


def timeline(report: ExposureReport, windows: list[WindowRead]) -> str:
    """The period as a bar, each window a red span on it (its title says when and how many)."""
    since, until = report.since.timestamp(), report.until.timestamp()
    span = max(until - since, 1e-6)

    def x(moment: datetime | None) -> float:
        at = until if moment is None else min(max(moment.timestamp(), since), until)
        return round((at - since) / span * WIDTH, 2)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="64" '
        f'viewBox="0 0 {WIDTH} 64" role="img" aria-label="exposure windows over the period">',
        f'<rect x="0" y="{BAR_Y}" width="{WIDTH}" height="{BAR_H}" fill="#e3e7ee"/>',
    ]
    for window in windows:
        left = x(window.start)
        width = max(x(window.end) - left, 2)
        title = (
            f"{instant(window.start)} to {instant(window.end)}: up to {window.peak_excess} "
            "beyond the audience"
        )
        parts.append(
            f'<rect class="window" x="{left}" y="{BAR_Y}" width="{width}" height="{BAR_H}" '
            f'fill="#d62828"><title>{esc(title)}</title></rect>'
        )
    parts += [
        f'<text x="0" y="16" font-size="12" fill="#5b6475">{esc(instant(report.since))}</text>',
        f'<text x="{WIDTH}" y="16" font-size="12" fill="#5b6475" text-anchor="end">'
        f"{esc(instant(report.until))}</text>",
        "</svg>",
    ]
    return "".join(parts)


def _windows(report: ExposureReport, dataset: DatasetReport) -> list[str]:
    out = ["<h3>Exposure windows</h3>", timeline(report, dataset.windows)]
    if not dataset.windows:
        return [
            *out,
            "<p>Not readable beyond its intended audience at any point of the period.</p>",
        ]
    out.append(
        "<table><thead><tr><th>Start</th><th>End</th><th>Peak excess</th><th>Opened by</th>"
        "<th>Closed by</th></tr></thead><tbody>"
    )
    for window in dataset.windows:
        opened = "open before the period" if window.open_at_since else _changes(window.opened_by)
        out.append(
            '<tr class="window">'
            + _when("start", window.start)
            + _when("end", window.end)
            + _num("peak_excess", window.peak_excess)
            + f"<td>{opened}</td><td>{_changes(window.closed_by)}</td></tr>"
        )
    return [*out, "</tbody></table>"]


def _who_could(dataset: DatasetReport) -> list[str]:
    could = dataset.who_could
    out = [
        "<h3>Who could read it</h3><p>",
        f'<span class="stat">peak beyond audience <b data-field="peak_excess">'
        f"{could.peak_excess}</b></span>",
        f'<span class="stat">ever beyond audience <b data-field="ever_excess">'
        f"{could.ever_excess}</b></span>",
        f'<span class="stat">at end: could <b data-field="effective_at_until">'
        f'{could.effective_at_until}</b>, meant to <b data-field="intended_at_until">'
        f'{could.intended_at_until}</b>, beyond <b data-field="excess_at_until">'
        f"{could.excess_at_until}</b></span></p>",
    ]
    if could.principals:
        out.append(
            "<table><thead><tr><th>Principal</th><th>First exposed</th><th>Still at end</th>"
            "</tr></thead><tbody>"
        )
        for p in could.principals:
            out.append(
                f'<tr class="could" data-principal="{esc(p.principal)}">'
                f'<td data-field="principal">{esc(p.principal)}</td>'
                + _when("first_exposed_at", p.first_exposed_at)
                + f"<td>{'yes' if p.at_until else 'no'}</td></tr>"
            )
        out.append("</tbody></table>")
        if len(could.principals) < could.ever_excess:
            out.append(f"<p>{len(could.principals)} of {could.ever_excess} listed.</p>")
    return out


def _who_did(dataset: DatasetReport) -> list[str]:
    did = dataset.who_did
    out = ["<h3>Who did</h3>"]
    if not did.principals:
        out.append("<p>No checks of this dataset in the period (in the database).</p>")
    else:
        out.append(
            "<table><thead><tr><th>Principal</th><th>Reads</th><th>Allowed</th>"
            "<th>Out of audience</th><th>First</th><th>Last</th><th>Purposes</th></tr></thead>"
            "<tbody>"
        )
        for p in did.principals:
            purposes = ", ".join(f"{esc(u.purpose or '(none)')} ({u.reads})" for u in p.purposes)
            out.append(
                f'<tr class="did" data-principal="{esc(p.principal)}">'
                f'<td data-field="principal">{esc(p.principal)}</td>'
                + _num("reads", p.reads)
                + _num("allowed", p.allowed)
                + _num("out_of_audience", p.out_of_audience)
                + _when("first_at", p.first_at)
                + _when("last_at", p.last_at)
                + f"<td>{purposes}</td></tr>"
            )
        out.append("</tbody></table>")
    if did.archived_out_of_audience_reads:
        out.append(
            f"<p>Plus {did.archived_out_of_audience_reads} out-of-audience reads in archived "
            "segments overlapping the period (not broken down by principal).</p>"
        )
    return out


def render(report: ExposureReport) -> str:
    title = f"Exposure report: {report.pattern}"
    body = [
        f"<h1>{esc(title)}</h1>",
        f'<p class="meta">Period <span data-field="since">{esc(instant(report.since))}</span> '
        f'to <span data-field="until">{esc(instant(report.until))}</span>; generated '
        f"{esc(instant(report.generated_at))}.</p>",
    ]
    if not report.datasets:
        body.append(
            f"<p>No dataset matching {esc(report.pattern)} was registered in the period.</p>"
        )
    for dataset in report.datasets:
        body.append(f'<section class="dataset" data-dataset="{esc(dataset.dataset)}">')
        body.append(f"<h2>{esc(dataset.dataset)}</h2>")
        body += _windows(report, dataset)
        body += _who_could(dataset)
        body += _who_did(dataset)
        body.append("</section>")
    state = "" if report.integrity.ok else " failed"
    verdict = "ok" if report.integrity.ok else "bad"
    body.append(
        f'<h2>Integrity</h2><p class="integrity{state}" data-field="integrity" '
        f'data-ok="{str(report.integrity.ok).lower()}"><span class="{verdict}">'
        f"{'Intact' if report.integrity.ok else 'Tampered'}.</span> "
        f"{integrity_statement(report.integrity, esc)}</p>"
    )
    if report.next_cursor is not None:
        body.append(
            f"<p>More principals could read: continue with cursor {esc(report.next_cursor)}.</p>"
        )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'\">"
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
