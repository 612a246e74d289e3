"""What a finding states, measured on a `PolicyView`, and the typed rows a findings diff is made
of (`app.exposure.diff`): no I/O."""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.exposure.schemas import FindingRead, FindingStatus, Severity
from app.exposure.view import PolicyView
from app.policy.casbin_model import READ_ACTIONS
from app.policy.decision_index import Rule

READ = "read"
# Findings are analysed for every action that reads a dataset (the check path treats them all
# as reads). A grant has one action, so a grant's finding is that of its own action.
ACTIONS = tuple(sorted(READ_ACTIONS))
SAMPLE = 20
PATHS = 5

Key = tuple[str, int]  # (dataset, grant id)
Paths = list[dict[str, Any]]  # [{"principal", "via"}], as stored


def severity_for(sensitivity: str, reach: int) -> Severity:
    """A restricted dataset readable by more than a handful outside its audience is critical."""
    if sensitivity == "restricted":
        return Severity.critical if reach >= 10 else Severity.high
    if sensitivity == "confidential":
        return Severity.high if reach >= 50 else Severity.medium
    if sensitivity == "internal":
        return Severity.medium if reach >= 500 else Severity.low
    return Severity.low


@dataclass(frozen=True, slots=True)
class StoredFinding:
    """An open or accepted finding as a diff needs it (`repository.BRIEF`); `paths` only when
    every column was loaded (a scan compares them)."""

    id: int
    dataset: str
    grant_id: int
    excess_count: int
    severity: str
    status: str
    excess_sample: list[str]
    paths: Paths | None = None

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> "StoredFinding":
        return cls(
            row["id"],
            row["dataset"],
            row["grant_id"],
            row["excess_count"],
            row["severity"],
            row["status"],
            row["excess_sample"],
            row.get("paths"),
        )


@dataclass(frozen=True, slots=True)
class Measured:
    """What a finding states about a (dataset, grant) pair: its excess as the analyser
    measures it (a sample of it, and a shortest path from the first few sampled)."""

    dataset: str
    grant_id: int
    principal: str
    excess_count: int
    excess_sample: list[str]
    paths: Paths
    severity: str

    def fields(self) -> dict[str, Any]:
        """As the finding's columns."""
        return {
            "dataset": self.dataset,
            "grant_id": self.grant_id,
            "principal": self.principal,
            "excess_count": self.excess_count,
            "excess_sample": self.excess_sample,
            "paths": self.paths,
            "severity": self.severity,
        }


@dataclass(frozen=True, slots=True)
class Acceptance:
    """An exposure accepted knowingly, by whom, why and until when; `is_approved` when a
    second principal approved it (`app.approvals`): only then does it count on a `block`
    dataset."""

    accepted_by: str
    reason: str
    until: datetime
    is_approved: bool = False


@dataclass(frozen=True, slots=True)
class Opened:
    """A new finding; accepted at once when the change carries an acceptance."""

    measured: Measured
    acceptance: Acceptance | None = None


@dataclass(frozen=True, slots=True)
class Rewritten:
    """A stored finding whose sample, paths (and count, severity) change; `status` open again
    (an accepted finding widened) or accepted anew (`acceptance`), else unchanged (None)."""

    id: int
    measured: Measured
    status: FindingStatus | None = None
    acceptance: Acceptance | None = None


@dataclass(frozen=True, slots=True)
class Recounted:
    """A stored finding whose sample and paths stay: its count, and severity where it moves."""

    id: int
    excess_count: int
    severity: str | None


@dataclass(frozen=True, slots=True)
class Refused:
    """A finding the block guard refuses to open or widen (`id`: the stored one, if any)."""

    id: int | None
    measured: Measured

    @property
    def key(self) -> tuple[str, int]:
        return (self.measured.dataset, self.measured.grant_id)


def sample_paths(view: PolicyView, subjects: tuple[str, ...], sample: list[str]) -> Paths:
    """A shortest path from each of the first sampled principals to the grant's subject."""
    directory = view.analyser.directory
    out: Paths = []
    for principal in sample[:PATHS]:
        for subject in subjects:
            via = directory.path(principal, subject)
            if via is not None:
                out.append({"principal": principal, "via": list(via)})
                break
    return out


def measure(
    view: PolicyView,
    dataset: str,
    grant_id: int,
    subjects: tuple[str, ...],
    sample: list[str],
    count: int,
    principal: str | None = None,
) -> Measured:
    """The finding's statement from its sampled excess; `principal` the grant's subject (the
    first rule's when not given)."""
    return Measured(
        dataset=dataset,
        grant_id=grant_id,
        principal=subjects[0] if principal is None else principal,
        excess_count=count,
        excess_sample=sample,
        paths=sample_paths(view, subjects, sample),
        severity=severity_for(view.datasets[dataset].sensitivity, count).value,
    )


@dataclass(frozen=True)
class Excess:
    """Per grant id: (excess bits, count) where non-empty, and the grant's subjects."""

    bits: dict[int, tuple[int, int]]
    subjects: dict[int, tuple[str, ...]]


def excess_of(
    view: PolicyView,
    dataset: str,
    rules: tuple[Rule, ...] | None,
    at: float,
    lasting: bool = False,
) -> Excess:
    """The dataset's per-grant excess, for every reading action: for every live allow (`rules`
    None), or for `rules` only. `lasting`: not counting the denies that expire (worst case)."""
    analyser = view.analyser
    intended = analyser.intended_bits(view.datasets[dataset].audience)
    subjects: dict[int, tuple[str, ...]] = {}
    bits: dict[int, tuple[int, int]] = {}
    for action in ACTIONS:
        if rules is None:
            exposure = analyser.exposure(dataset, action, at, intended, lasting)
            for rule in exposure.allow_rules:
                subjects[int(rule.id)] = (*subjects.get(int(rule.id), ()), rule.sub)
            for rule_id, excess in exposure.by_grant.items():
                if excess:
                    bits[int(rule_id)] = (excess, exposure.excess_counts[rule_id])
        else:
            chosen = [rule for rule in rules if rule.act == action]
            if not chosen:
                continue
            for rule in chosen:
                subjects[int(rule.id)] = (*subjects.get(int(rule.id), ()), rule.sub)
            for rule_id, found in analyser.grant_excess_bits(
                chosen, dataset, action, at, intended, lasting
            ).items():
                if found.bits:
                    bits[int(rule_id)] = (found.bits, found.count)
    return Excess(bits, subjects)


def recount(row: StoredFinding, count: int, severity: str) -> Recounted:
    """The severity only where it changes (an indexed column: writing it costs as much as the
    count)."""
    return Recounted(row.id, count, None if row.severity == severity else severity)


def would_be(finding_id: int | None, measured: Measured, **changes: Any) -> FindingRead:
    """A finding that is not stored (refused, or simulated) as the answer lists it."""
    return FindingRead.model_validate(
        {
            "id": finding_id,
            **measured.fields(),
            "status": FindingStatus.open.value,
            "opened_at": None,
            **changes,
        }
    )
