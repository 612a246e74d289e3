"""Prometheus metrics, correct across worker processes.

Two kinds:

- **Process events** (checks by decision, check latency, access-log write failures) are
  prometheus-client counters and histograms. ``aclaudit serve`` sets ``PROMETHEUS_MULTIPROC_DIR``
  for its workers, so each worker writes its values to files there and a scrape of any worker
  sums every worker's (dead workers' counts included, so totals never go backwards). The one
  gauge, whether each hash chain's last verify in a worker failed, takes the live workers' highest.
- **Database facts** (open findings by severity, out-of-audience reads, the alert feed's and the
  access log's head ids, the log's partition headroom and the age of its oldest entry) are
  read from the database at scrape time, so every worker and every replica reports the same
  truth.
"""

import logging
import os
from collections.abc import Iterable, Sequence

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.accesslog import partitions
from app.accesslog import repository as accesslog_repository
from app.alerts import repository as alerts_repository
from app.alerts.schemas import AlertType
from app.db import utcnow
from app.exposure import repository as exposure_repository

logger = logging.getLogger("aclaudit.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SEVERITIES = ("critical", "high", "medium", "low")
CHECK_ROUTES = {"/v1/check": "check", "/v1/check/batch": "batch"}
# The check path answers in milliseconds; the tail buckets catch lock waits and timeouts.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


def is_multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


class Metrics:
    """This process's event metrics (one set per app, so in-process apps don't mix)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.checks = Counter(
            "aclaudit_checks",
            "Checks answered, by decision (a check that could not be recorded is a deny).",
            ["decision"],
            registry=self.registry,
        )
        self.check_seconds = Histogram(
            "aclaudit_check_duration_seconds",
            "Time to answer POST /v1/check (route=check) or /v1/check/batch (route=batch).",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.log_write_failures = Counter(
            "aclaudit_access_log_write_failures",
            "Checks answered 503 deny because their access-log entry could not be committed.",
            registry=self.registry,
        )
        self.clock_steps = Counter(
            "aclaudit_access_log_clock_steps",
            "Batches that found the access log's head instant more than 100 ms ahead of this "
            "process's clock (a clock stepped back, a replica off NTP, an edited head): decided "
            "at this clock, they restart the log's non-decreasing instants (browsing by time "
            "gets slower, not wrong).",
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "aclaudit_auth_failures",
            "Requests refused 401: no token, or an unknown or revoked one.",
            registry=self.registry,
        )
        self.integrity_failing = Gauge(
            "aclaudit_log_integrity_failing",
            "1 if this worker's last verify of the hash chain failed, 0 if it passed (absent "
            "before its first); across workers the highest. Unlike "
            "aclaudit_log_integrity_failures it needs no alert row to have been written.",
            ["chain"],
            multiprocess_mode="livemax",
            registry=self.registry,
        )
        self.refusals = Counter(
            "aclaudit_refusals",
            "Requests refused before their caller was authorised, by status: counted in the "
            "admin trail (one entry per token, path and status each sweep), not written one "
            "by one.",
            ["status"],
            registry=self.registry,
        )
        self.scim_batch = Histogram(
            "aclaudit_scim_pushes_per_commit",
            "The IdP's group PATCHes committed together (one transaction, one findings run).",
            buckets=(1, 2, 3, 4, 6, 8, 16, 32),
            registry=self.registry,
        )
        self.scim_creates = Histogram(
            "aclaudit_scim_creates_per_commit",
            "The IdP's user and group creates committed together (one transaction).",
            buckets=(1, 2, 3, 4, 6, 8, 16, 32),
            registry=self.registry,
        )
        # Each labelled child made once (present at 0 from the start) and kept: `labels()`
        # validates and looks the child up under a lock on every call.
        self._allowed = self.checks.labels("allow")
        self._denied = self.checks.labels("deny")
        self._latency = {
            path: self.check_seconds.labels(route) for path, route in CHECK_ROUTES.items()
        }

    def count_recorded(self, decisions: Sequence[str]) -> None:
        allowed = sum(1 for d in decisions if d == "allow")
        if allowed:
            self._allowed.inc(allowed)
        if len(decisions) - allowed:
            self._denied.inc(len(decisions) - allowed)

    def record_verify(self, chain: str, ok: bool) -> None:
        """A verify's result for one hash chain (reported by `app.accesslog.integrity`)."""
        self.integrity_failing.labels(chain).set(0 if ok else 1)

    def count_unrecorded(self, checks: int) -> None:
        self._denied.inc(checks)
        self.log_write_failures.inc(checks)

    def count_clock_step(self, gap: float) -> None:
        self.clock_steps.inc()

    def count_refused(self, checks: int) -> None:
        """Checks answered 503 deny before they reached the access log (token store down)."""
        self._denied.inc(checks)

    def observe_scim_batch(self, pushes: int) -> None:
        self.scim_batch.observe(pushes)

    def observe_scim_creates(self, creates: int) -> None:
        self.scim_creates.observe(creates)

    def count_refusal(self, status: int) -> None:
        self.refusals.labels(str(status)).inc()

    def observe_request(self, path: str, seconds: float) -> None:
        latency = self._latency.get(path)
        if latency is not None:
            latency.observe(seconds)

    def mark_process_dead(self) -> None:
        """On worker exit: drop this process's live gauges (its counters keep counting)."""
        if is_multiprocess():
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


class _Facts:
    def __init__(self, families: list[GaugeMetricFamily | CounterMetricFamily]) -> None:
        self.families = families

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        return self.families


async def database_facts(
    maker: async_sessionmaker[AsyncSession], partition_entries: int
) -> list[GaugeMetricFamily | CounterMetricFamily]:
    up = GaugeMetricFamily(
        "aclaudit_database_up", "1 if this scrape could read the database, else 0."
    )
    try:
        async with maker() as session:
            open_findings = await exposure_repository.count_open_by_severity(session)
            outside = await exposure_repository.count_out_of_audience_reads(session)
            alert_head = await alerts_repository.head(session)
            log_head = (await accesslog_repository.get_head(session)).last_id
            integrity = await alerts_repository.count_of_type(
                session, AlertType.log_integrity_failed
            )
            headroom = await partitions.headroom(session)
            oldest_at = await accesslog_repository.oldest_entry_at(session)
            newest_archive = await accesslog_repository.newest_archive(session)
    except Exception as exc:
        logger.warning("metrics could not read the database: %r", exc)
        up.add_metric([], 0)
        return [up]
    up.add_metric([], 1)
    findings = GaugeMetricFamily(
        "aclaudit_open_findings",
        "Open (not accepted, not resolved) findings, by severity.",
        labels=["severity"],
    )
    for severity in SEVERITIES:
        findings.add_metric([severity], open_findings.get(severity, 0))
    reads = CounterMetricFamily(
        "aclaudit_out_of_audience_reads",
        "Allowed reads by principals outside the dataset's intended audience (access log, "
        "archived ones included).",
        value=outside,
    )
    alerts = GaugeMetricFamily(
        "aclaudit_alert_feed_head_id", "The newest alert id (GET /v1/alerts last_id).", alert_head
    )
    log = GaugeMetricFamily(
        "aclaudit_access_log_head_id", "The newest access-log entry id.", log_head
    )
    failures = CounterMetricFamily(
        "aclaudit_log_integrity_failures",
        "log.integrity_failed alerts raised (the periodic check raises one per first bad entry).",
        value=integrity,
    )
    families: list[GaugeMetricFamily | CounterMetricFamily] = [
        up,
        findings,
        reads,
        alerts,
        log,
        failures,
    ]
    if headroom is not None:  # PostgreSQL: the log is partitioned
        families.append(
            GaugeMetricFamily(
                "aclaudit_access_log_partition_headroom_entries",
                "Entries the access log can still take before its newest partition is full "
                "(PostgreSQL). The sweeper keeps two partitions ahead; a batch that finds none "
                "makes them, waiting.",
                headroom,
            )
        )
        families.append(
            GaugeMetricFamily(
                "aclaudit_access_log_partition_entries",
                "Entries per access-log partition made by this process "
                "(ACLAUDIT_LOG_PARTITION_ENTRIES, PostgreSQL).",
                partition_entries,
            )
        )
    families.append(
        GaugeMetricFamily(
            "aclaudit_access_log_oldest_entry_age_seconds",
            "Age of the oldest access-log entry still in the database (0: none): archiving "
            "(`aclaudit log archive`) keeps it under the retention period.",
            0.0 if oldest_at is None else (utcnow() - oldest_at).total_seconds(),
        )
    )
    if newest_archive is not None:
        families.append(
            GaugeMetricFamily(
                "aclaudit_access_log_last_archive_timestamp_seconds",
                "When the newest archived segment was recorded (Unix time).",
                newest_archive.archived_at.timestamp(),
            )
        )
    return families


class _Scrape(CollectorRegistry):
    def __init__(self, collectors: list[Collector]) -> None:
        super().__init__()
        self._parts = collectors

    def collect(self) -> Iterable[Metric]:
        for part in self._parts:
            yield from part.collect()


async def render(
    metrics: Metrics, maker: async_sessionmaker[AsyncSession], partition_entries: int
) -> bytes:
    """The Prometheus text exposition: every worker's events, then the database's facts."""
    if is_multiprocess():
        events = CollectorRegistry()
        multiprocess.MultiProcessCollector(events)  # type: ignore[no-untyped-call]
    else:
        events = metrics.registry
    facts = _Facts(await database_facts(maker, partition_entries))
    return generate_latest(_Scrape([events, facts]))
