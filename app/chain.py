"""The hash chains of the access log, the admin trail and the alert feed: pure functions, no I/O.

Each entry's hash is SHA-256 over the previous entry's hash and the entry's canonical form, so
editing, deleting or reordering any entry breaks every hash after it. Checkpoints (head hash and
count) are HMAC-signed when a key is configured and can be copied out of the service to detect
a truncated tail; so is the head itself, on every write, so the newest entries are covered too.

The admin trail and the alert feed are chained the same way (`record_hash` over
`TRAIL_FIELDS` / `ALERT_FIELDS`), each with a head of its own.
"""

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64
# An entry or checkpoint hash as the service writes it (SHA-256, lower-case hex).
HASH_PATTERN = "^[0-9a-f]{64}$"
CHAINED_FIELDS = (
    "id",
    "decision_id",
    "at",
    "principal",
    "dataset",
    "action",
    "purpose",
    "decision",
    "reason",
    "out_of_audience",
    "data_subjects",
    "request_id",
    "caller",
    "policy_version",
)
# What `sign_archive` covers of an access_log_archives row (a segment moved out of the log).
ARCHIVE_SIGNED = (
    "segment",
    "first_id",
    "last_id",
    "prev_hash",
    "last_hash",
    "entries",
    "sha256",
    "checkpoint_signature",
    "first_at",
    "last_at",
    "out_of_audience_reads",
)


def utc_text(at: datetime) -> str:
    """An entry's ``at`` in its canonical form."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# json.dumps with these arguments; one encoder, since json.dumps builds one per call otherwise.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def canonical(entry: Mapping[Any, Any], at_text: str | None = None) -> bytes:
    """The entry's canonical form: its chained fields as sorted, compact JSON, ``at`` as
    `utc_text` (given as `at_text` when the caller has it already: a batch shares one)."""
    doc = {name: entry[name] for name in CHAINED_FIELDS}
    doc["at"] = utc_text(entry["at"]) if at_text is None else at_text
    return _CANONICAL.encode(doc).encode()


def entry_hash(prev_hash: str, entry: Mapping[Any, Any], at_text: str | None = None) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + canonical(entry, at_text)).hexdigest()


# The chains' names, as heads are signed and verify reports them.
ACCESS_LOG = "access_log"
ADMIN_TRAIL = "admin_trail"
ALERTS = "alerts"
# What is hashed of a trail entry and of an alert. A trail entry's token_id is left out: the
# token's deletion sets it to NULL (its token_name, which the trail shows, is chained).
TRAIL_FIELDS = (
    "id",
    "at",
    "token_name",
    "method",
    "path",
    "query",
    "status",
    "request_id",
    "count",
)
# Hashed only when set, so entries written before they existed keep their hashes.
OPTIONAL_FIELDS = ("issuer",)
ALERT_FIELDS = (
    "id",
    "type",
    "severity",
    "at",
    "summary",
    "dataset",
    "finding_id",
    "access_log_id",
)


def record_hash(
    prev_hash: str, fields: Sequence[str], row: Mapping[Any, Any], at_text: str | None = None
) -> str:
    """A trail entry's or an alert's hash: as `entry_hash`, over `fields` of `row` (``at`` as
    `at_text` when the caller has it already: a batch's alerts share one)."""
    doc = {name: row[name] for name in fields}
    doc.update((name, row[name]) for name in OPTIONAL_FIELDS if row.get(name) is not None)
    doc["at"] = at_text or utc_text(row["at"])
    return hashlib.sha256(prev_hash.encode() + b"\n" + _CANONICAL.encode(doc).encode()).hexdigest()


def sign_head(key: bytes, chain_name: str, head_id: int, head_hash: str) -> str:
    """A head's signature: not interchangeable with a checkpoint's, nor another chain's."""
    message = f"aclaudit-head:{chain_name}:{head_id}:{head_hash}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def head_signature_ok(
    key: bytes, chain_name: str, head_id: int, head_hash: str, signature: str | None
) -> bool:
    if not isinstance(signature, str):
        return False
    return hmac.compare_digest(sign_head(key, chain_name, head_id, head_hash), signature)


def checkpoint_message(entry_id: int, head_hash: str) -> bytes:
    return f"aclaudit-checkpoint:{entry_id}:{head_hash}".encode()


def sign_checkpoint(key: bytes, entry_id: int, head_hash: str) -> str:
    return hmac.new(key, checkpoint_message(entry_id, head_hash), hashlib.sha256).hexdigest()


def checkpoint_signature_ok(key: bytes, entry_id: int, head_hash: str, signature: str) -> bool:
    return hmac.compare_digest(sign_checkpoint(key, entry_id, head_hash), signature)


def archive_message(record: Mapping[str, Any]) -> bytes:
    """What an archive record's signature covers: every field of `ARCHIVE_SIGNED` (`first_at`
    only when set: records from before 0017 have none, and were signed without it)."""
    doc = {name: record[name] for name in ARCHIVE_SIGNED}
    doc["last_at"] = utc_text(record["last_at"])
    if doc["first_at"] is None:
        del doc["first_at"]
    else:
        doc["first_at"] = utc_text(doc["first_at"])
    return b"aclaudit-archive:" + json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def sign_archive(key: bytes, record: Mapping[str, Any]) -> str:
    """An archive record's signature: a forged or altered record (one hiding a deleted
    prefix, or stretched over entries deleted after it) does not carry one."""
    return hmac.new(key, archive_message(record), hashlib.sha256).hexdigest()


def archive_signature_ok(key: bytes, record: Mapping[str, Any], signature: str | None) -> bool:
    if not isinstance(signature, str):
        return False
    return hmac.compare_digest(sign_archive(key, record), signature)


class ChainVerifier:
    """Feed entries in id order; the first inconsistency becomes ``first_bad_id``.

    ``marks`` maps entry ids to the hash they must have (checkpoints, external anchors).
    """

    def __init__(
        self, marks: Mapping[int, str] | None = None, start: tuple[int, str] = (0, GENESIS)
    ) -> None:
        """`start`: an entry already verified (id, hash); the chain is checked after it."""
        self.marks = {m: h for m, h in (marks or {}).items() if m > start[0]}
        self.checked, self.head = start
        self.first_bad_id: int | None = None
        self.problem: str | None = None

    def _fail(self, entry_id: int, problem: str) -> bool:
        self.first_bad_id, self.problem = entry_id, problem
        return False

    def feed(self, entry: Mapping[Any, Any]) -> bool:
        """Check one entry (with ``prev_hash`` and ``hash``); False once the chain is broken."""
        if self.first_bad_id is not None:
            return False
        expected = self.checked + 1
        if entry["id"] != expected:
            return self._fail(expected, f"entry {expected} is missing")
        if entry["prev_hash"] != self.head or entry_hash(self.head, entry) != entry["hash"]:
            return self._fail(expected, f"entry {expected} was altered or reordered")
        mark = self.marks.get(expected)
        if mark is not None and mark != entry["hash"]:
            return self._fail(expected, f"entry {expected} differs from its checkpoint")
        self.head = entry["hash"]
        self.checked = expected
        return True

    def finish(self, head_id: int, head_hash: str) -> bool:
        """After the last entry: the recorded head and every mark must be covered."""
        if self.first_bad_id is not None:
            return False
        beyond = [m for m in self.marks if m > self.checked]
        if self.checked != head_id or self.head != head_hash or beyond:
            recorded = max([head_id, *beyond])
            return self._fail(
                self.checked + 1,
                f"the log ends at entry {self.checked} but the head or a checkpoint records "
                f"{recorded}: entries were removed",
            )
        return True


class RecordVerifier:
    """Trail entries or alerts in id order: each must link to the one before it.

    Ids increase but may have gaps (rows written before the chain existed); the links alone
    catch a removed, edited or reordered row: the next row no longer names its hash.
    """

    def __init__(self, fields: Sequence[str], start: tuple[int, str] = (0, GENESIS)) -> None:
        self.fields = fields
        self.last_id, self.head = start
        self.checked = 0
        self.first_bad_id: int | None = None
        self.problem: str | None = None

    def _fail(self, row_id: int, problem: str) -> bool:
        self.first_bad_id, self.problem = row_id, problem
        return False

    def feed(self, row: Mapping[Any, Any]) -> bool:
        if self.first_bad_id is not None:
            return False
        row_id = row["id"]
        if row["prev_hash"] != self.head or record_hash(self.head, self.fields, row) != row["hash"]:
            return self._fail(
                row_id, f"row {row_id} was altered, or a row before it removed or reordered"
            )
        self.last_id, self.head = row_id, row["hash"]
        self.checked += 1
        return True

    def finish(self, head_id: int, head_hash: str) -> bool:
        """After the last row: it must be the recorded head."""
        if self.first_bad_id is not None:
            return False
        if self.last_id != head_id or self.head != head_hash:
            return self._fail(
                min(self.last_id, head_id) + 1,
                f"the rows end at {self.last_id} but the head records {head_id}: rows were "
                "removed, or the head moved",
            )
        return True
