"""The renderings escape every user-controlled string (no I/O)."""

from datetime import UTC, datetime

from app.reports import render_html, render_markdown
from app.reports.schemas import (
    CouldRead,
    DatasetReport,
    DidRead,
    ExposureReport,
    IntegrityRead,
    PolicyChangeRead,
    PurposeCount,
    WhoCould,
    WhoDid,
    WindowRead,
)

EVIL = '"><img src=x onerror=alert(1)><script>alert(2)</script>'
AT = datetime(2026, 11, 1, tzinfo=UTC)


def _report() -> ExposureReport:
    change = PolicyChangeRead(
        kind="grant_added",
        version=3,
        at=AT,
        by=f"tok{EVIL}",
        grant_id=7,
        principal=f"group:{EVIL}",
        resource=f"ds{EVIL}",
        effect="allow",
    )
    member = PolicyChangeRead(
        kind="member_removed", version=4, at=AT, by=None, member=f"user:{EVIL}", group=EVIL
    )
    return ExposureReport(
        pattern=f"p{EVIL}",
        since=AT,
        until=AT,
        generated_at=AT,
        next_cursor=f"c{EVIL}",
        datasets=[
            DatasetReport(
                dataset=f"ds{EVIL}",
                registered_at_until=True,
                windows=[
                    WindowRead(
                        start=AT,
                        end=None,
                        open_at_since=False,
                        peak_excess=1,
                        peak_at=AT,
                        opened_by=[change],
                        closed_by=[member],
                    )
                ],
                who_could=WhoCould(
                    effective_at_until=1,
                    intended_at_until=0,
                    excess_at_until=1,
                    peak_excess=1,
                    peak_at=AT,
                    ever_excess=2,
                    principals=[
                        CouldRead(principal=f"user:{EVIL}", first_exposed_at=AT, at_until=True)
                    ],
                ),
                who_did=WhoDid(
                    principals=[
                        DidRead(
                            principal=f"user:{EVIL}",
                            reads=1,
                            allowed=1,
                            out_of_audience=1,
                            first_at=AT,
                            last_at=AT,
                            purposes=[PurposeCount(purpose=EVIL, reads=1)],
                        )
                    ],
                    archived_out_of_audience_reads=0,
                ),
                policy_versions_walked=2,
                measurements=3,
            )
        ],
        integrity=IntegrityRead(
            ok=False,
            entries=1,
            head=None,
            head_id=1,
            head_signed=False,
            first_bad_id=1,
            verified_after=0,
            verified_through=1,
            problem=EVIL,
            period_first_entry=1,
            period_last_entry=1,
            checkpoint_before=None,
            checkpoint_covering=None,
            signed_checkpoints=False,
            archived_through=5,
            archived_segments=[EVIL],
        ),
    )


def test_html_escapes_principal_dataset_purpose_and_token_names():
    page = render_html.render(_report())
    assert "<img" not in page and "<script" not in page and "onerror=alert(1)>" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "&quot;&gt;&lt;img" in page  # attribute values too (data-principal)
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")  # no external resource


def test_markdown_escapes_them_too():
    text = render_markdown.render(_report())
    assert "<img" not in text and "<script" not in text
    assert "&lt;img src=x onerror=alert\\(1\\)&gt;" in text
