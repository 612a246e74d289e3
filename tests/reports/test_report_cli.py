"""`aclaudit report` (JSON, Markdown, HTML), and the HTML page rendered by a real headless
browser (Chromium from Debian): what it shows equals the JSON."""

import asyncio
import json
import os
import shutil
import subprocess
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.conftest import Tokens
from tests.reports.scenario import XSS_PURPOSE, make_incident
from tests.test_cli import finish, start

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# .ci/run installs chromium and sets ACLAUDIT_REQUIRE_CHROMIUM, so CI never skips the browser test.
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("ACLAUDIT_REQUIRE_CHROMIUM"),
    reason="chromium is not installed (Debian package chromium)",
)


async def _report(
    database_url: str, tmp_path: Path, *args: str
) -> "subprocess.CompletedProcess[str]":
    process = start(tmp_path / "cli" / "x.db", "report", *args, url=database_url)
    return await asyncio.to_thread(finish, process)  # off the loop: the app shares the database


Attrs = dict[str, str | None]


class Fields(HTMLParser):
    """The text of every element with a ``data-field``, keyed by where it is: the section's
    ``data-dataset``, the row's class and ``data-principal``, and the field."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, Attrs]] = []
        self.found: list[tuple[str | None, str | None, str | None, str, str]] = []
        self.scripts = 0
        self._open: list[list[str]] = []

    def _nearest(self, key: str, tag: str | None = None) -> str | None:
        for name, attrs in reversed(self.stack):
            if (tag is None or name == tag) and attrs.get(key):
                return attrs[key]
        return None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.scripts += tag == "script"
        self.stack.append((tag, dict(attrs)))
        if dict(attrs).get("data-field"):
            self._open.append([])

    def handle_data(self, data: str) -> None:
        for parts in self._open:
            parts.append(data)

    def handle_endtag(self, tag: str) -> None:
        field = self.stack[-1][1].get("data-field")
        if field:
            text = "".join(self._open.pop()).strip()
            where = (
                self._nearest("data-dataset"),
                self._nearest("class", "tr"),
                self._nearest("data-principal"),
            )
            self.found.append((*where, field, text))
        self.stack.pop()


def _instant(value: str | None) -> str:
    if value is None:
        return "open"
    return datetime.fromisoformat(value).astimezone(UTC).isoformat().replace("+00:00", "Z")


@needs_chromium
async def test_the_html_page_renders_in_chromium_and_shows_the_jsons_numbers(
    client: httpx.AsyncClient,
    tokens: Tokens,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
    tmp_path: Path,
):
    incident = await make_incident(client, tokens, sessionmaker)
    until = datetime.now(UTC).isoformat()
    period = ["--dataset", "ea.*", "--since", incident.before.isoformat(), "--until", until]
    page = tmp_path / "report.html"
    as_json, as_html = await asyncio.gather(
        _report(database_url, tmp_path / "j", *period, "--format", "json"),
        _report(database_url, tmp_path / "h", *period, "--format", "html", "--output", str(page)),
    )
    assert as_json.returncode == 0, as_json.stderr
    assert as_html.returncode == 0, as_html.stderr
    assert "walked" in as_html.stderr and f"wrote {page}" in as_html.stderr  # progress
    report = json.loads(as_json.stdout)

    assert CHROMIUM is not None, "ACLAUDIT_REQUIRE_CHROMIUM is set but chromium is not installed"
    dom = await asyncio.to_thread(
        subprocess.run,
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert dom.returncode == 0 and "</html>" in dom.stdout, dom.stderr
    parsed = Fields()
    parsed.feed(dom.stdout)
    assert parsed.scripts == 0  # the purpose '<script>...' stayed text
    assert XSS_PURPOSE.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") in dom.stdout

    shown: dict[tuple[Any, ...], list[str]] = {}
    for dataset, row, principal, field, value in parsed.found:
        shown.setdefault((dataset, row, principal, field), []).append(value)
    expected: dict[tuple[Any, ...], list[str]] = {
        (None, None, None, "since"): [_instant(report["since"])],
        (None, None, None, "until"): [_instant(report["until"])],
    }
    for d in report["datasets"]:
        name, could = d["dataset"], d["who_could"]
        for field in (
            "peak_excess",
            "ever_excess",
            "effective_at_until",
            "intended_at_until",
            "excess_at_until",
        ):
            expected[(name, None, None, field)] = [str(could[field])]
        for w in d["windows"]:
            for field in ("start", "end"):
                expected.setdefault((name, "window", None, field), []).append(_instant(w[field]))
            expected.setdefault((name, "window", None, "peak_excess"), []).append(
                str(w["peak_excess"])
            )
        for p in could["principals"]:
            expected[(name, "could", p["principal"], "principal")] = [p["principal"]]
            expected[(name, "could", p["principal"], "first_exposed_at")] = [
                _instant(p["first_exposed_at"])
            ]
        for p in d["who_did"]["principals"]:
            key = (name, "did", p["principal"])
            expected[(*key, "principal")] = [p["principal"]]
            for field in ("reads", "allowed", "out_of_audience"):
                expected[(*key, field)] = [str(p[field])]
            for field in ("first_at", "last_at"):
                expected[(*key, field)] = [_instant(p[field])]
    integrity = shown.pop((None, None, None, "integrity"))
    assert shown == expected
    assert integrity[0].startswith("Intact") and report["integrity"]["ok"]
    [transcripts] = [d for d in report["datasets"] if d["dataset"] == "ea.transcripts"]
    assert len(transcripts["windows"]) == 1 and transcripts["who_could"]["peak_excess"] == 3


async def test_the_cli_answers_as_the_api_and_refuses_bad_input_naming_the_option(
    client: httpx.AsyncClient,
    tokens: Tokens,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
    tmp_path: Path,
):
    incident = await make_incident(client, tokens, sessionmaker)
    until = datetime.now(UTC).isoformat()
    since = incident.before.isoformat()
    period = ["--dataset", "ea.*", "--since", since, "--until", until]
    markdown, as_json, top = await asyncio.gather(
        _report(database_url, tmp_path / "m", *period),
        _report(database_url, tmp_path / "j", *period, "--format", "json"),
        _report(database_url, tmp_path / "t", *period, "--format", "json", "--top", "1"),
    )
    api = await client.get(
        "/v1/reports/exposure",
        params={"dataset": "ea.*", "since": since, "until": until, "limit": 1000},
        headers=tokens["audit:read"],
    )
    assert as_json.returncode == 0, as_json.stderr
    cli_report, api_report = json.loads(as_json.stdout), api.json()
    for doc in (cli_report, api_report):
        doc.pop("generated_at")
    assert cli_report == api_report
    listed = [p for d in json.loads(top.stdout)["datasets"] for p in d["who_could"]["principals"]]
    assert len(listed) == 1
    assert markdown.returncode == 0, markdown.stderr
    assert "# Exposure report: ea.\\*" in markdown.stdout
    assert f"grant {incident.grant_id} added: group:all allow on ea.\\*" in markdown.stdout
    assert "by mallory\\-admin" in markdown.stdout
    assert "&lt;script&gt;" in markdown.stdout and "<script>" not in markdown.stdout

    refusals = [
        (["--dataset", "EA/x"], "--dataset"),
        (["--dataset", "ea.*", "--since", "yesterday"], "--since"),
        (["--dataset", "ea.*", "--until", "2026-02-30T00:00:00Z"], "--until"),
        (["--dataset", "ea.*", "--since", until, "--until", since], "since"),
        (["--dataset", "ea.*", "--format", "pdf"], "--format"),
    ]
    results = await asyncio.gather(
        *(_report(database_url, tmp_path / f"r{i}", *args) for i, (args, _) in enumerate(refusals))
    )
    for (args, named), result in zip(refusals, results, strict=True):
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert named in result.stderr, (args, result.stderr)
