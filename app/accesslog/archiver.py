"""Archiving the oldest access-log entries into sealed segments (`aclaudit log archive`).

Retention is archiving, never silent deletion. Only whole checkpoint-covered ranges leave the
database: a segment ends at a checkpoint, so its manifest carries that checkpoint (and its
signature) as the proof of its last hash. For each segment, in order:

1. the entries are streamed into ``<name>.jsonl.gz.tmp``, synced, renamed; the manifest the
   same way (`app.accesslog.segments`);
2. both are read back from disk and verified: the checksum, the chain from the hash before the
   first entry to the checkpoint, its signature when a key is set; and the checkpoint must be
   the database's;
3. one transaction records the segment (``access_log_archives``, HMAC-signed with the
   checkpoint key when one is set, so verify can refuse a forged or stretched record),
   folds the grants' last uses through its last entry (`app.accesslog.usage`) and drops its
   entries.

A kill at any point leaves the entries in the database (with or without a written segment), or
a verified segment, its record, and no entries: never neither. A rerun removes the temporary
files and the unrecorded segments left behind whose entries the database still holds, with
their hashes (anything else unrecorded is the only copy of its entries: the run refuses), and
starts again from the newest recorded segment. The database's first remaining entry links to
the newest segment's last hash, which is where verify resumes the chain.

On PostgreSQL, where the log is partitioned by id, step 3 drops the partitions the segment
completes (`partitions.drop_archived`, in the same transaction), and segments are planned so
that each completes a partition (`plan`). Entries are streamed into the segment file a page at a
time, so a segment of a whole partition never sits in memory.

The log stays append-only through the service: no endpoint reaches this module.
"""

import asyncio
import contextlib
import fcntl
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import chain
from app.accesslog import partitions, repository, segments, usage, verifier
from app.accesslog.models import AccessLogArchive
from app.accesslog.segments import Checkpoint, Manifest
from app.config import Settings
from app.db import begin_write
from app.errors import AppError

# Entries read from the database per transaction while a segment is written.
READ_PAGE = 5000
LOCK_FILE = ".aclaudit-archive.lock"
# On SQLite a segment's drop holds the single write lock, and every check waits for it up to
# the busy timeout (ACLAUDIT_DATABASE_TIMEOUT, 5 s by default) before answering 503. Dropping
# 100 000 entries took ~0.74 s on the reference machine (2 shared cores): this cap keeps a
# drop near 1/7 of the default timeout, a margin for a slower disk or a busy machine.
SQLITE_MAX_SEGMENT_ENTRIES = 100_000

# A drop that cannot get its lock on the partitioned log in time is tried again this often.
DROP_ATTEMPTS = 5
LOCK_NOT_AVAILABLE = "55P03"

Progress = Callable[[str], None]


class ArchiveFailed(AppError):
    status = 409
    slug = "archive-failed"
    title = "Archive failed"


@dataclass(frozen=True)
class SegmentPlan:
    first_id: int
    prev_hash: str
    checkpoint: Checkpoint  # at the segment's last entry

    @property
    def last_id(self) -> int:
        return self.checkpoint.entry_id

    @property
    def name(self) -> str:
        return segments.segment_name(self.first_id, self.last_id)


@dataclass(frozen=True)
class Archived:
    segments: list[Manifest]
    removed_files: int

    @property
    def entries(self) -> int:
        return sum(m.entries for m in self.segments)


async def plan(
    session: AsyncSession, before: datetime, max_entries: int | None
) -> tuple[list[SegmentPlan], tuple[int, str]]:
    """Segments of the entries written before `before` that checkpoints cover, after the
    newest archived one (returned too: where the database's chain starts), each ending at a
    checkpoint and at most `max_entries` long unless no checkpoint comes sooner.

    With a partitioned log (PostgreSQL) no segment runs past the first checkpoint after a
    partition's last entry, so the segment that completes a partition drops it whole and
    deletes at most the rest of the group commit that wrote its checkpoint (the next
    partition's first entries). Without `max_entries` there, a segment is the rest of one
    partition, and the last one whatever is left before `before` in the partition it ends
    in: those entries are deleted as rows, and the partition is dropped whole by the run that
    archives its end (with the rows it still holds)."""
    newest = await repository.newest_archive(session)
    base = (0, chain.GENESIS) if newest is None else (newest.last_id, newest.last_hash)
    head = await repository.get_head(session)
    newer = await repository.first_id_at_or_after(session, before)
    end = (head.last_id if newer is None else min(newer - 1, head.last_id)) + 1
    marks = await repository.checkpoints_between(session, base[0], end)
    ends = [p.last_id for p in await repository.log_partitions(session) if p.last_id > base[0]]
    plans: list[SegmentPlan] = []
    first_id, prev_hash = base[0] + 1, base[1]
    i = 0
    while i < len(marks):
        # the first checkpoint at or after the end of the partition first_id is in
        bound = next((b for b in ends if b >= first_id), None)
        k = (
            None
            if bound is None
            else next((j for j in range(i, len(marks)) if marks[j][0] >= bound), None)
        )
        if max_entries is None:
            j = len(marks) - 1 if k is None else k  # the rest of the partition, or all left
        else:
            # the furthest checkpoint within max_entries, or the next one if none is
            j = i
            while (
                j + 1 < len(marks)
                and marks[j + 1][0] - first_id < max_entries
                and (k is None or j + 1 <= k)
            ):
                j += 1
        entry_id, head_hash, signature = marks[j]
        plans.append(SegmentPlan(first_id, prev_hash, Checkpoint(entry_id, head_hash, signature)))
        first_id, prev_hash, i = entry_id + 1, head_hash, j + 1
    return plans, base


async def clean_up(
    maker: async_sessionmaker[AsyncSession], directory: Path, archived_through: int
) -> int:
    """Remove what an interrupted run left: temporary files, and unrecorded segments and
    manifests whose entries the database still holds with the hashes they name. Anything
    else of ours that is not recorded (segments whose entries left the database: the only
    copy of them, from another database, a lost table, a restore) is refused, naming the
    files, and nothing is removed. Returns how many files were removed."""
    async with maker() as session:
        recorded = {
            r.segment.removesuffix(segments.SEGMENT_SUFFIX)
            for r in await repository.archive_records(session)
        }
    temporary: list[Path] = []
    unrecorded: dict[str, list[Path]] = {}
    for path in sorted(await asyncio.to_thread(_listing, directory)):
        if segments.ids_of(path.name) is None:
            continue
        if segments.is_temporary(path.name):
            temporary.append(path)
        elif segments.base_name(path.name) not in recorded:
            unrecorded.setdefault(segments.base_name(path.name), []).append(path)
    refused = [
        path.name
        for name, paths in unrecorded.items()
        if not await _still_in_database(maker, directory, name, archived_through)
        for path in paths
    ]
    if refused:
        raise ArchiveFailed(
            f"{directory} holds segments this database did not record and whose entries it "
            f"does not hold (the only copy of them): {', '.join(refused)}. Nothing was removed "
            "or archived: point --to at this database's own archive directory, or move those "
            "files away after checking where they came from"
        )
    removed = [*temporary, *(p for paths in unrecorded.values() for p in paths)]
    for path in removed:
        await asyncio.to_thread(path.unlink)
    if removed:
        await asyncio.to_thread(segments.sync_directory, directory)
    return len(removed)


def _listing(directory: Path) -> list[Path]:
    return list(directory.iterdir())


async def _still_in_database(
    maker: async_sessionmaker[AsyncSession], directory: Path, name: str, archived_through: int
) -> bool:
    """Whether unrecorded segment `name`'s entries are all still in the database, after the
    archived prefix, with the hashes its manifest (or the segment) names."""
    ids = segments.ids_of(name + segments.SEGMENT_SUFFIX)
    if ids is None or ids[0] <= archived_through or ids[1] < ids[0]:
        return False
    try:
        prev_hash, last_hash = await asyncio.to_thread(segments.end_hashes, directory, name)
    except segments.SegmentProblem:
        return False
    async with maker() as session:
        held = await repository.count_entries(session, ids[0], ids[1])
        first_prev = await repository.entry_prev_hash(session, ids[0])
        last = await repository.entry_hash(session, ids[1])
    return held == ids[1] - ids[0] + 1 and (first_prev, last) == (prev_hash, last_hash)


async def archive(
    maker: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    before: datetime,
    directory: Path,
    max_entries: int | None,
    progress: Progress,
) -> Archived:
    """Archive every whole checkpoint-covered range written before `before` (see the module).

    One run at a time per directory (a lock file, released by the kernel if the run is
    killed): a second run's clean-up would remove the first one's unrecorded segments.
    """
    try:
        await asyncio.to_thread(segments.make_directory, directory)
    except OSError as exc:
        raise ArchiveFailed(
            f"--to {directory} cannot hold an archive: {exc.strerror or exc}"
            + ("" if exc.filename in (None, str(directory)) else f" ({exc.filename})")
        ) from None
    with _locked(directory):
        return await _archive(maker, settings, before, directory, max_entries, progress)


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    try:
        lock = open(directory / LOCK_FILE, "a")  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise ArchiveFailed(f"--to {directory} cannot hold an archive: {exc}") from None
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ArchiveFailed(f"another archive run is using {directory}") from None
        yield


async def _archive(
    maker: async_sessionmaker[AsyncSession],
    settings: Settings,
    before: datetime,
    directory: Path,
    max_entries: int | None,
    progress: Progress,
) -> Archived:
    if settings.is_sqlite:
        if max_entries is not None and max_entries > SQLITE_MAX_SEGMENT_ENTRIES:
            progress(
                f"SQLite: segments capped at {SQLITE_MAX_SEGMENT_ENTRIES} entries (each drop "
                "holds the write lock checks wait for)"
            )
        max_entries = min(max_entries or SQLITE_MAX_SEGMENT_ENTRIES, SQLITE_MAX_SEGMENT_ENTRIES)
    async with maker() as session:
        if max_entries is None and not await repository.log_partitions(session):
            max_entries = SQLITE_MAX_SEGMENT_ENTRIES  # a log not (yet) partitioned
        plans, base = await plan(session, before, max_entries)
    longest = max((p.last_id - p.first_id + 1 for p in plans), default=0)
    if settings.is_sqlite and longest > SQLITE_MAX_SEGMENT_ENTRIES:
        raise ArchiveFailed(
            f"checkpoints are up to {longest} entries apart, and a segment ends at one: on "
            f"SQLite a segment may hold at most {SQLITE_MAX_SEGMENT_ENTRIES} (its drop holds "
            "the write lock); lower ACLAUDIT_CHECKPOINT_EVERY. Nothing was archived"
        )
    removed = await clean_up(maker, directory, base[0])
    if removed:
        progress(f"removed {removed} files an interrupted run left behind")
    done: list[Manifest] = []
    total = sum(p.last_id - p.first_id + 1 for p in plans)
    for number, segment in enumerate(plans, 1):
        progress(
            f"segment {number}/{len(plans)}: entries {segment.first_id}..{segment.last_id} "
            f"({sum(m.entries for m in done)}/{total} archived)"
        )
        done.append(await _archive_segment(maker, settings, directory, segment, progress))
    return Archived(done, removed)


async def _archive_segment(
    maker: async_sessionmaker[AsyncSession],
    settings: Settings,
    directory: Path,
    segment: SegmentPlan,
    progress: Progress,
) -> Manifest:
    facts = _Facts()
    rows = _entries(maker, segment, facts, asyncio.get_running_loop(), progress)
    tmp = await asyncio.to_thread(segments.write_segment, directory, segment.name, rows)
    path = await asyncio.to_thread(segments.seal, tmp)
    manifest = Manifest(
        segment=path.name,
        first_id=segment.first_id,
        last_id=segment.last_id,
        entries=facts.entries,
        prev_hash=segment.prev_hash,
        last_hash=segment.checkpoint.head_hash,
        checkpoint=segment.checkpoint,
        sha256=await asyncio.to_thread(segments.file_sha256, path),
    )
    await asyncio.to_thread(
        segments.seal, await asyncio.to_thread(segments.write_manifest, directory, manifest)
    )
    try:
        # read back from disk, the manifest too: what was verified is what the files say
        manifest = segments.read_manifest(directory, segment.name)
        await asyncio.to_thread(
            segments.check_segment,
            directory,
            manifest,
            settings.checkpoint_key_bytes,
            settings.checkpoint_key_since,
        )
    except segments.SegmentProblem as exc:
        raise ArchiveFailed(f"{exc}; its entries were kept in the database") from None
    progress(f"  verified {manifest.segment}")
    for attempt in range(1, DROP_ATTEMPTS + 1):
        try:
            async with maker() as session, session.begin():
                await begin_write(session)
                await _record(session, manifest, facts.recorded(), settings.checkpoint_key_bytes)
            return manifest
        except IntegrityError:
            raise ArchiveFailed(
                f"another archive run recorded entries {manifest.first_id}.. meanwhile; "
                "nothing was dropped by this one"
            ) from None
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                raise
            progress(f"  the log is busy: the drop waits for its lock (attempt {attempt})")
            await asyncio.sleep(attempt)
    raise ArchiveFailed(
        f"the access log stayed busy: segment {manifest.name} is written and verified, but its "
        f"entries could not be dropped after {DROP_ATTEMPTS} attempts (each waits "
        f"{partitions.DROP_LOCK_TIMEOUT_MS} ms for the lock); run again"
    )


class _Facts:
    """What the record keeps of a segment's entries, gathered as they stream past: how many,
    when the first and last were written (the period a report may count them in), and the
    out-of-audience reads by dataset (reports add them to the database's, so archiving does
    not make those reads vanish)."""

    def __init__(self) -> None:
        self.entries = 0
        self.first_at: datetime | None = None
        self.last_at: datetime | None = None
        self.reads: dict[str, int] = {}

    def add(self, row: Mapping[Any, Any]) -> None:
        self.entries += 1
        if self.first_at is None:
            self.first_at = row["at"]
        self.last_at = row["at"]
        if row["out_of_audience"]:
            self.reads[row["dataset"]] = self.reads.get(row["dataset"], 0) + 1

    def recorded(self) -> dict[str, Any]:
        return {
            "first_at": self.first_at,
            "last_at": self.last_at,
            "out_of_audience_reads": self.reads,
        }


def _entries(
    maker: async_sessionmaker[AsyncSession],
    segment: SegmentPlan,
    facts: _Facts,
    loop: asyncio.AbstractEventLoop,
    progress: Progress,
) -> Iterator[Mapping[Any, Any]]:
    """The segment's entries, for the thread that writes them: read a page at a time in short
    transactions (on the event loop), so a segment of a whole partition never sits in memory.
    They must be whole and gap-free (raises `ArchiveFailed`, and the segment is not written)."""
    after = segment.first_id - 1
    while after < segment.last_id:
        up_to = min(after + READ_PAGE, segment.last_id)
        page = asyncio.run_coroutine_threadsafe(_read_page(maker, after, up_to), loop).result()
        if not page or page[0]["id"] != after + 1 or page[-1]["id"] - after != len(page):
            raise ArchiveFailed(
                f"entries {after + 1}..{segment.last_id} are not all in the database: run "
                "`aclaudit log verify`; nothing was archived from this segment on"
            )
        for row in page:
            facts.add(row)
            yield row
        after = page[-1]["id"]
        progress(f"  read {after - segment.first_id + 1}/{segment.last_id - segment.first_id + 1}")


async def _read_page(
    maker: async_sessionmaker[AsyncSession], after: int, up_to: int
) -> Sequence[Mapping[Any, Any]]:
    async with maker() as session:
        return await repository.entry_rows(session, after=after, up_to=up_to)


async def _record(
    session: AsyncSession, manifest: Manifest, facts: Mapping[str, Any], key: bytes | None
) -> None:
    """Record the segment (signed when a key is set) and drop its entries, in the caller's
    transaction, after checking that the database still holds exactly what was verified: the
    previous segment ends just before it, and its checkpoint is the database's."""
    newest = await repository.newest_archive(session)
    through = 0 if newest is None else newest.last_id
    if through != manifest.first_id - 1:
        raise ArchiveFailed(
            f"another archive run moved the archived prefix to entry {through} meanwhile"
        )
    marks = await repository.checkpoints_between(
        session, manifest.last_id - 1, manifest.last_id + 1
    )
    if [m[:2] for m in marks] != [(manifest.last_id, manifest.last_hash)]:
        raise ArchiveFailed(f"checkpoint {manifest.last_id} differs from segment {manifest.name}")
    fields = {
        "segment": manifest.segment,
        "first_id": manifest.first_id,
        "last_id": manifest.last_id,
        "prev_hash": manifest.prev_hash,
        "last_hash": manifest.last_hash,
        "entries": manifest.entries,
        "sha256": manifest.sha256,
        "checkpoint_signature": manifest.checkpoint.signature,
        **facts,
    }
    # The grants' last uses must outlive the entries (usually folded by the sweeper already).
    await usage.fold(session, through_id=manifest.last_id)
    signature = None if key is None else chain.sign_archive(key, fields)
    session.add(AccessLogArchive(**fields, archived_at=datetime.now(UTC), signature=signature))
    dropped = await repository.drop_archived_entries(session, manifest.first_id, manifest.last_id)
    if dropped != manifest.entries:
        raise ArchiveFailed(
            f"entries {manifest.first_id}..{manifest.last_id}: {dropped} found, "
            f"{manifest.entries} archived; nothing was dropped"
        )


@dataclass(frozen=True)
class ArchiveVerified:
    ok: bool
    segments: int
    entries: int
    problem: str | None = None
    segment: str | None = None  # the first bad segment's name


def check_archive(
    records: Sequence[AccessLogArchive],
    directory: Path,
    key: bytes | None,
    signed_from: int,
    progress: Progress,
) -> ArchiveVerified:
    """Every recorded segment, in order, read from `directory` and verified: present, its
    manifest the one recorded, its checksum and chain, each linking to the one before."""
    prev: tuple[int, str] = (0, chain.GENESIS)
    entries = 0
    for number, record in enumerate(records, 1):
        name = record.segment.removesuffix(segments.SEGMENT_SUFFIX)
        problem = _check_record(record, prev, directory, key, signed_from)
        if problem is not None:
            return ArchiveVerified(False, number - 1, entries, problem, name)
        prev = (record.last_id, record.last_hash)
        entries += record.entries
        progress(f"  segment {number}/{len(records)} ok: {record.segment}")
    return ArchiveVerified(True, len(records), entries)


def _check_record(
    record: AccessLogArchive,
    prev: tuple[int, str],
    directory: Path,
    key: bytes | None,
    signed_from: int,
) -> str | None:
    """What is wrong with one recorded segment (None: it verifies)."""
    name = record.segment.removesuffix(segments.SEGMENT_SUFFIX)
    forged = verifier.record_problem(record, key, signed_from)
    if forged is not None:
        return forged
    if record.first_id != prev[0] + 1 or record.prev_hash != prev[1]:
        return (
            f"the database's record of segment {name} does not follow entry {prev[0]}: "
            "a segment's record was removed or altered"
        )
    try:
        manifest = segments.read_manifest(directory, name)
    except segments.SegmentProblem as exc:
        if not (directory / record.segment).exists():
            return f"segment {name} is missing from {directory}"
        return str(exc)
    recorded = (
        record.segment,
        record.first_id,
        record.last_id,
        record.entries,
        record.prev_hash,
        record.last_hash,
        record.checkpoint_signature,
        record.sha256,
    )
    found = (
        manifest.segment,
        manifest.first_id,
        manifest.last_id,
        manifest.entries,
        manifest.prev_hash,
        manifest.last_hash,
        manifest.checkpoint.signature,
        manifest.sha256,
    )
    if found != recorded:
        return f"the manifest of segment {name} differs from the database's record of it"
    try:
        segments.check_segment(directory, manifest, key, signed_from)
    except segments.SegmentProblem as exc:
        return str(exc)
    return None
