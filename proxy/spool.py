"""A local, append-only, fsync-ed spool of request records the database could not take.

Records are JSON lines in segment files under SPOOL_DIR, named per process
(``records-<pid>-<random>-<n>.jsonl``). A process holds an exclusive ``flock`` on every
segment it owns until the segment is replayed and deleted, so a segment whose lock can be
taken belongs to a process that is gone: any process (a sibling worker, or the next one
to start) claims it and replays it. Appends are flushed and fsync-ed before they return
(the caller's answer depends on it); a line cut short by a crash is skipped on reading.

The file format and locking live here; when to spool and how to replay is the record
writer's business (proxy.recorder).
"""
from __future__ import annotations

import fcntl
import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import orjson

log = logging.getLogger(__name__)

SUFFIX = ".jsonl"
REJECTED_SUFFIX = ".rejected"


@dataclass
class Segment:
    path: Path
    fd: int
    count: int = 0                     # records in it
    generation_ids: list[str] = field(default_factory=list)
    orphan: bool = False               # written by another (dead) process

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # releases the lock
            self.fd = -1


class Spool:
    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        self._name = f"records-{os.getpid()}-{secrets.token_hex(4)}"
        self._seq = 0
        self._current: Segment | None = None
        self._sealed: list[Segment] = []

    @property
    def depth(self) -> int:
        """Records waiting for the database (this process's, and orphans it claimed)."""
        return sum(s.count for s in self._sealed) + (self._current.count if self._current else 0)

    def append(self, records: list[dict]) -> None:
        """Durably add records (blocking: flush and fsync). Raises OSError if the disk
        cannot take them."""
        if self._current is None:
            self._current = self._open_segment()
        data = b"".join(orjson.dumps(r) + b"\n" for r in records)
        view = memoryview(data)
        while view:
            written = os.write(self._current.fd, view)
            view = view[written:]
        os.fsync(self._current.fd)
        self._current.count += len(records)
        self._current.generation_ids.extend(r["generation_id"] for r in records)

    def sealed(self) -> list[Segment]:
        return list(self._sealed)

    def seal(self) -> list[Segment]:
        """Close the current segment for appends (the next append starts a new one) and
        return every segment waiting for replay, oldest first."""
        if self._current is not None:
            self._sealed.append(self._current)
            self._current = None
        return list(self._sealed)

    def claim_orphans(self) -> list[Segment]:
        """Take over segments whose process is gone (their lock is free)."""
        if not self.directory.is_dir():
            return []
        claimed = []
        own = {s.path for s in self._sealed} | ({self._current.path} if self._current else set())
        for path in sorted(self.directory.glob("records-*" + SUFFIX)):
            if path in own:
                continue
            segment = _try_lock(path)
            if segment is not None:
                segment.count, segment.generation_ids = _count(path)
                segment.orphan = True
                if segment.count:
                    log.warning("claimed %d spooled request records from %s", segment.count, path.name)
                self._sealed.append(segment)
                claimed.append(segment)
        return claimed

    @staticmethod
    def read(segment: Segment) -> list[dict]:
        records = []
        with open(segment.path, "rb") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    records.append(orjson.loads(line))
                except orjson.JSONDecodeError:  # a write cut short by a crash: never acknowledged
                    log.warning("skipping an incomplete line %d of %s", number, segment.path.name)
        return records

    def done(self, segment: Segment) -> None:
        """Every record of the segment is in the database: delete it."""
        segment.path.unlink(missing_ok=True)
        segment.close()
        self._sealed.remove(segment)

    def reject(self, segment: Segment, records: list[dict]) -> None:
        """Records the database refuses for good (not for being down): kept aside for an
        operator, out of the replay loop."""
        if records:
            path = segment.path.with_suffix(REJECTED_SUFFIX)
            with open(path, "ab") as f:
                f.write(b"".join(orjson.dumps(r) + b"\n" for r in records))
                f.flush()
                os.fsync(f.fileno())
            log.error("%d spooled request records were refused by the database; kept in %s", len(records), path)

    def close(self) -> None:
        """Release every lock (process exit): what is left is claimed by the next process."""
        for segment in [*self._sealed, *([self._current] if self._current else [])]:
            if segment.count == 0:
                segment.path.unlink(missing_ok=True)
            segment.close()
        self._sealed.clear()
        self._current = None

    def _open_segment(self) -> Segment:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        path = self.directory / f"{self._name}-{self._seq:06d}{SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        _fsync_directory(self.directory)  # the new name itself must survive a crash
        return Segment(path, fd)


def _try_lock(path: Path) -> Segment | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # Replayed and deleted by another process between our open and our lock?
        if os.fstat(fd).st_ino != os.stat(path).st_ino:
            raise FileNotFoundError(path)
    except (BlockingIOError, FileNotFoundError):
        os.close(fd)
        return None
    return Segment(path, fd)


def _count(path: Path) -> tuple[int, list[str]]:
    ids = []
    with open(path, "rb") as f:
        for line in f:
            try:
                ids.append(orjson.loads(line)["generation_id"])
            except (orjson.JSONDecodeError, KeyError, TypeError):
                continue
    return len(ids), ids


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
