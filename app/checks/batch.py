"""One group commit's contents, decided and chained: pure functions, no I/O.

The access-log stores (``app.checks.group_commit``) call :func:`build_batch` inside the
transaction that holds the chain head, after reading the policy version and the head, so every
entry is decided with the policy that was current when its transaction began and is chained onto
the committed head.
"""

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app import chain
from app.alerts.schemas import AlertType
from app.alerts.service import AlertEvent
from app.policy.snapshot import PolicySnapshot


@dataclass(frozen=True)
class CheckInput:
    principal: str
    dataset: str
    action: str
    purpose: str | None
    request_id: str | None
    data_subjects: tuple[str, ...]


@dataclass(frozen=True)
class Submission:
    checks: list[CheckInput]
    caller: str
    token_hash: str | None  # None for in-process callers (the demo) and people (OIDC JWTs)


@dataclass(frozen=True)
class Recorded:
    """A decision that is committed to the access log."""

    entry: dict[str, Any]


class TokenRevoked(Exception):
    """The caller's token was revoked before its checks could be decided."""


@dataclass
class Batch:
    """What one transaction appends, and what each submission is answered once it commits."""

    results: list[list[Recorded] | Exception]
    entries: list[dict[str, Any]] = field(default_factory=list)
    subjects: list[tuple[str, int]] = field(default_factory=list)  # (subject, entry id)
    alerts: list[AlertEvent] = field(default_factory=list)
    head: tuple[int, str] = (0, chain.GENESIS)
    head_signature: str | None = None  # with a checkpoint key: the new head's HMAC
    checkpoint: dict[str, Any] | None = None


def decision_ids(count: int, now: float) -> list[str]:
    """`count` new decision ids: UUIDv7 layout (RFC 9562), 48-bit Unix milliseconds first.

    74 random bits per id keep them unique (the column's unique index would refuse a clash,
    failing the batch closed). Time order keeps the unique index append-mostly, so a commit
    touches a page or two of it instead of one random page per entry (uuid4).
    """
    millis = int(now * 1000) << 80
    noise = os.urandom(10 * count)
    ids = []
    for n in range(count):
        value = millis | int.from_bytes(noise[10 * n : 10 * n + 10], "big")
        value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
        value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 9562 variant
        h = f"{value:032x}"
        ids.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return ids


_VERB = {"export": "exported"}  # the action in a read alert's summary (else "read")
READ_SEVERITY = {"restricted": "critical", "confidential": "high", "internal": "medium"}


def build_batch(
    submissions: Sequence[Submission],
    snapshot: PolicySnapshot,
    live_tokens: set[str] | None,
    head: tuple[int, str],
    now: float,
    at: datetime,
    checkpoint_every: int,
    checkpoint_key: bytes | None,
) -> Batch:
    """Decide every check, give it the next id, chain it, and collect its subjects and alerts.

    ``live_tokens`` is None when the tokens need no revalidation (the policy version did not
    move since they were last read); otherwise a submission whose token is not in it is refused.
    """
    head_id, last_hash = head
    last_id = head_id
    batch = Batch(results=[])
    version = snapshot.version
    ids = iter(decision_ids(sum(len(s.checks) for s in submissions), now))
    at_text = chain.utc_text(at)
    for submission in submissions:
        token = submission.token_hash
        if token is not None and live_tokens is not None and token not in live_tokens:
            batch.results.append(TokenRevoked("the token was revoked"))
            continue
        recorded = []
        for check in submission.checks:
            outcome = snapshot.decide(
                check.principal, check.dataset, check.action, check.purpose, now
            )
            last_id += 1
            entry: dict[str, Any] = {
                "id": last_id,
                "decision_id": next(ids),
                "at": at,
                "principal": check.principal,
                "dataset": check.dataset,
                "action": check.action,
                "purpose": check.purpose,
                "decision": outcome.decision,
                "reason": outcome.reason(),
                "out_of_audience": outcome.out_of_audience,
                "data_subjects": list(check.data_subjects),
                "request_id": check.request_id,
                "caller": submission.caller,
                "policy_version": version,
            }
            entry["prev_hash"] = last_hash
            last_hash = entry["hash"] = chain.entry_hash(last_hash, entry, at_text)
            batch.entries.append(entry)
            if outcome.out_of_audience:
                batch.alerts.append(_read_alert(entry, snapshot.sensitivities))
            batch.subjects.extend((s, last_id) for s in check.data_subjects)
            recorded.append(Recorded(entry))
        batch.results.append(recorded)
    batch.head = (last_id, last_hash)
    if checkpoint_key is not None and batch.entries:
        # One HMAC per group commit: the signed head covers every answered check.
        batch.head_signature = chain.sign_head(checkpoint_key, chain.ACCESS_LOG, *batch.head)
    if batch.entries and last_id // checkpoint_every > head_id // checkpoint_every:
        signature = (
            chain.sign_checkpoint(checkpoint_key, last_id, last_hash) if checkpoint_key else None
        )
        batch.checkpoint = {
            "entry_id": last_id,
            "head_hash": last_hash,
            "at": at,
            "signature": signature,
        }
    return batch


def _read_alert(entry: dict[str, Any], sensitivities: dict[str, str]) -> AlertEvent:
    sensitivity = sensitivities.get(entry["dataset"], "internal")
    return AlertEvent(
        type=AlertType.read_out_of_audience,
        severity=READ_SEVERITY.get(sensitivity, "low"),
        summary=f"{entry['principal']} {_VERB.get(entry['action'], 'read')} {sensitivity} "
        f"{entry['dataset']} from outside its "
        f"intended audience (grant {entry['reason']['grant_id']})",
        dataset=entry["dataset"],
        access_log_id=entry["id"],
        principal=entry["principal"],
        action=entry["action"],
        grant_id=entry["reason"]["grant_id"],
    )
