"""Sealed archive segments of the access log: the files, no database.

A segment holds entries ``first_id..last_id`` as JSON Lines (every chained field, ``at`` in its
canonical text, ``prev_hash`` and ``hash``), gzip-compressed with a zero mtime so the same
entries always make the same bytes. Its manifest (``<name>.manifest.json``) says what it holds:
the ids, the hash before the first entry, the last hash, the checkpoint that covers the last
entry (its id, head hash and signature), the entry count and the segment file's SHA-256.

Files are written under a temporary name, synced, renamed and the directory synced, so a
segment or a manifest is either absent or whole. `check_segment` reads a segment back and
verifies it against its manifest: the checksum, the chain from ``prev_hash`` to the checkpoint,
and the checkpoint's signature when a key is set.
"""

import errno
import gzip
import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app import chain

FORMAT = "aclaudit-access-log-segment/1"
SEGMENT_SUFFIX = ".jsonl.gz"
MANIFEST_SUFFIX = ".manifest.json"
TMP_SUFFIX = ".tmp"
# access-log-<first id>-<last id>, zero-padded so names sort in id order
NAME = re.compile(r"^access-log-(\d{12,})-(\d{12,})(\.jsonl\.gz|\.manifest\.json)(\.tmp)?$")
FIELDS = (*chain.CHAINED_FIELDS, "prev_hash", "hash")


class SegmentProblem(Exception):
    """A segment or its manifest is missing, unreadable or does not verify; the message says
    which file and what."""


@dataclass(frozen=True)
class Checkpoint:
    entry_id: int
    head_hash: str
    signature: str | None


@dataclass(frozen=True)
class Manifest:
    segment: str  # the segment file's name, in the manifest's directory
    first_id: int
    last_id: int
    entries: int
    prev_hash: str  # the hash of entry first_id - 1 (GENESIS before entry 1)
    last_hash: str
    checkpoint: Checkpoint  # covers last_id: entry_id == last_id, head_hash == last_hash
    sha256: str
    format: str = FORMAT

    @property
    def name(self) -> str:
        return self.segment.removesuffix(SEGMENT_SUFFIX)


def segment_name(first_id: int, last_id: int) -> str:
    return f"access-log-{first_id:012d}-{last_id:012d}"


def ids_of(file_name: str) -> tuple[int, int] | None:
    """The first and last entry ids a segment, manifest or temporary file of ours is named
    after."""
    found = NAME.match(file_name)
    return None if found is None else (int(found.group(1)), int(found.group(2)))


def base_name(file_name: str) -> str:
    """``access-log-<first>-<last>`` of one of our files' names."""
    return file_name.split(".", 1)[0]


def end_hashes(directory: Path, name: str) -> tuple[str, str]:
    """The hash before segment `name`'s first entry and its last entry's hash, from its
    manifest if there is one, else from the segment itself (raise `SegmentProblem`)."""
    try:
        manifest = read_manifest(directory, name)
        return manifest.prev_hash, manifest.last_hash
    except SegmentProblem:
        if (directory / (name + MANIFEST_SUFFIX)).exists():
            raise
    first: dict[str, Any] | None = None
    last: dict[str, Any] | None = None
    try:
        for entry in _entries(directory / (name + SEGMENT_SUFFIX)):
            first = first or entry
            last = entry
    except (OSError, EOFError, ValueError, KeyError, TypeError) as exc:
        raise SegmentProblem(f"segment {name} is unreadable: {exc}") from None
    if first is None or last is None:
        raise SegmentProblem(f"segment {name} is empty")
    return str(first["prev_hash"]), str(last["hash"])


def is_temporary(file_name: str) -> bool:
    return NAME.match(file_name) is not None and file_name.endswith(TMP_SUFFIX)


def entry_line(entry: Mapping[Any, Any]) -> bytes:
    doc = {name: entry[name] for name in FIELDS}
    doc["at"] = chain.utc_text(entry["at"])
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode() + b"\n"


def _parse_line(line: bytes) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(line)
    doc["at"] = datetime.strptime(doc["at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return doc


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_segment(directory: Path, name: str, entries: Iterable[Mapping[Any, Any]]) -> Path:
    """Write `entries` (an iterable: they may stream from the database) as segment `name`
    under a temporary name, synced (not yet renamed)."""
    tmp = directory / (name + SEGMENT_SUFFIX + TMP_SUFFIX)
    try:
        with open(tmp, "wb") as raw:
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as packed:
                for entry in entries:
                    packed.write(entry_line(entry))
            raw.flush()
            os.fsync(raw.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)  # `entries` failed (or the disk did): nothing was written
        raise
    return tmp


def seal(tmp: Path) -> Path:
    """Rename a synced temporary file to its final name and sync the directory."""
    final = tmp.with_name(tmp.name.removesuffix(TMP_SUFFIX))
    os.replace(tmp, final)
    _sync_dir(tmp.parent)
    return final


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(directory: Path, manifest: Manifest) -> Path:
    """The manifest under a temporary name, synced (not yet renamed)."""
    tmp = directory / (manifest.name + MANIFEST_SUFFIX + TMP_SUFFIX)
    with open(tmp, "wb") as f:
        f.write(json.dumps(asdict(manifest), indent=2, sort_keys=True).encode() + b"\n")
        f.flush()
        os.fsync(f.fileno())
    return tmp


def read_manifest(directory: Path, name: str) -> Manifest:
    path = directory / (name + MANIFEST_SUFFIX)
    try:
        doc = json.loads(path.read_bytes())
        doc["checkpoint"] = Checkpoint(**doc["checkpoint"])
        manifest = Manifest(**doc)
    except FileNotFoundError:
        raise SegmentProblem(f"the manifest of segment {name} is missing ({path})") from None
    except (ValueError, TypeError, KeyError) as exc:
        raise SegmentProblem(f"the manifest of segment {name} is unreadable: {exc}") from None
    if manifest.name != name or manifest.format != FORMAT:
        raise SegmentProblem(f"the manifest of segment {name} names another segment or format")
    return manifest


def _entries(path: Path) -> Iterator[dict[str, Any]]:
    with gzip.open(path, "rb") as f:
        for line in f:
            yield _parse_line(line)


def check_segment(directory: Path, manifest: Manifest, key: bytes | None, signed_from: int) -> None:
    """Read the segment back and verify it against `manifest` (raise `SegmentProblem`).

    The chain must run from the manifest's ``prev_hash`` through ``first_id..last_id`` to the
    covering checkpoint's head hash, and the checkpoint must be validly signed when `key` is
    set (from entry `signed_from` on, as `app.accesslog.verifier` requires of the database's).
    """
    name = manifest.name
    path = directory / manifest.segment
    if not path.is_file():
        raise SegmentProblem(f"segment {name} is missing ({path})")
    if file_sha256(path) != manifest.sha256:
        raise SegmentProblem(f"segment {name} was altered: its SHA-256 differs from its manifest")
    mark = manifest.checkpoint
    if mark.entry_id != manifest.last_id or mark.head_hash != manifest.last_hash:
        raise SegmentProblem(f"the manifest of segment {name}: its checkpoint does not cover it")
    is_signed = key is not None and mark.entry_id >= signed_from
    if is_signed and not chain.checkpoint_signature_ok(
        key or b"", mark.entry_id, mark.head_hash, mark.signature or ""
    ):
        raise SegmentProblem(
            f"the manifest of segment {name}: checkpoint {mark.entry_id} has no valid signature"
        )
    verifier = chain.ChainVerifier(
        {mark.entry_id: mark.head_hash}, start=(manifest.first_id - 1, manifest.prev_hash)
    )
    try:
        for entry in _entries(path):
            if not verifier.feed(entry):
                break
    except (OSError, EOFError, ValueError, KeyError, TypeError) as exc:
        raise SegmentProblem(f"segment {name} is unreadable: {exc}") from None
    if not verifier.finish(manifest.last_id, manifest.last_hash):
        raise SegmentProblem(f"segment {name}: {verifier.problem}")
    if verifier.checked - manifest.first_id + 1 != manifest.entries:
        raise SegmentProblem(f"the manifest of segment {name} miscounts its entries")


def sync_directory(directory: Path) -> None:
    _sync_dir(directory)


def make_directory(directory: Path) -> None:
    """Create `directory` and its missing parents, each made durable before anything is
    written in it: a new directory's entry lives in its parent, so each parent is fsynced
    after a directory is made in it (else a power cut could lose the directory, with every
    segment in it, after the database dropped their entries). Raises `OSError`."""
    missing: list[Path] = []
    path = directory.absolute()
    while not path.exists() and not path.is_symlink():
        missing.append(path)
        path = path.parent
    for path in reversed(missing):
        path.mkdir(exist_ok=True)
        _sync_dir(path.parent)
    if not directory.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(directory))
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(directory))
