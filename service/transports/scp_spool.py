"""The SCP's durable spool: received instances on disk, named by content hash, indexed in SQLite.

Layout under the spool root::

    spool.sqlite                 instance and series index (WAL, synchronous=FULL)
    tmp/                         partial writes (same file system, renamed into place)
    series/<sha256(study|series)[:32]>/<sha256(file bytes)>.dcm

No file or directory name is derived from a UID in readable form; UIDs can carry PHI.
An instance is durable (file and directory fsynced, index committed) before ``store`` returns.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from service.domain.errors import ResourceExhausted

SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    series_key TEXT PRIMARY KEY,
    study_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    calling_ae TEXT NOT NULL,
    first_arrival REAL NOT NULL,
    last_arrival REAL NOT NULL,
    announced_at REAL
);
CREATE TABLE IF NOT EXISTS instances (
    content_sha256 TEXT PRIMARY KEY,
    series_key TEXT NOT NULL,
    sop_instance_uid TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    received_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS instances_by_series ON instances(series_key);
"""


@dataclass(frozen=True)
class SpooledSeries:
    """A series in the spool: where its files are and a digest of exactly which files."""

    series_key: str
    study_uid: str
    series_uid: str
    directory: Path
    instance_count: int
    content_digest: str
    last_arrival: float


def series_key_of(study_uid: str, series_uid: str) -> str:
    """A PHI-free, stable name for a series (hash of its UIDs)."""
    return hashlib.sha256(f"{study_uid}|{series_uid}".encode()).hexdigest()[:32]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """Thread-safe spool of received instances (one per SCP process)."""

    def __init__(self, root: Path, min_free_bytes: int = 0) -> None:
        self.root = Path(root)
        self.min_free_bytes = min_free_bytes
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)
        (self.root / "series").mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._series_locks = tuple(threading.Lock() for _ in range(64))
        self._db = sqlite3.connect(
            self.root / "spool.sqlite", check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        for leftover in (self.root / "tmp").iterdir():
            leftover.unlink(missing_ok=True)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _series_lock(self, series_key: str) -> threading.Lock:
        """Serialises writing into and pruning of one series folder (striped locks)."""
        return self._series_locks[int(series_key[:8], 16) % len(self._series_locks)]

    def series_dir(self, series_key: str) -> Path:
        return self.root / "series" / series_key

    def check_room(self, incoming_bytes: int) -> None:
        """Raises ``ResourceExhausted`` when storing would leave less than the watermark free."""
        free = shutil.disk_usage(self.root).free
        if free - incoming_bytes < self.min_free_bytes:
            raise ResourceExhausted(
                f"spool disk nearly full: {free // 2**20} MiB free, "
                f"watermark {self.min_free_bytes // 2**20} MiB"
            )

    def store(
        self, data: bytes, study_uid: str, series_uid: str, sop_instance_uid: str,
        calling_ae: str, now: float | None = None,
    ) -> Path:
        """Writes one encoded instance durably and indexes it; returns its path.

        Receiving identical bytes again is a no-op on disk but counts as a new arrival, so a
        re-routed series becomes stable (and is announced) again.
        """
        self.check_room(len(data))
        now = time.time() if now is None else now
        digest = hashlib.sha256(data).hexdigest()
        key = series_key_of(study_uid, series_uid)
        with self._series_lock(key):
            return self._store_locked(data, key, digest, study_uid, series_uid,
                                      sop_instance_uid, calling_ae, now)

    def _store_locked(
        self, data: bytes, key: str, digest: str, study_uid: str, series_uid: str,
        sop_instance_uid: str, calling_ae: str, now: float,
    ) -> Path:
        target_dir = self.series_dir(key)
        target = target_dir / f"{digest}.dcm"
        if not target.exists():
            target_dir.mkdir(parents=True, exist_ok=True)
            tmp = self.root / "tmp" / f"{digest}.{threading.get_ident()}.part"
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
            _fsync_dir(target_dir)
        with self._tx() as db:
            db.execute(
                "INSERT INTO series(series_key, study_uid, series_uid, calling_ae, first_arrival,"
                " last_arrival, announced_at) VALUES (?, ?, ?, ?, ?, ?, NULL)"
                " ON CONFLICT(series_key) DO UPDATE SET last_arrival = excluded.last_arrival,"
                " announced_at = NULL",
                (key, study_uid, series_uid, calling_ae, now, now),
            )
            db.execute(
                "INSERT OR IGNORE INTO instances(content_sha256, series_key, sop_instance_uid,"
                " size_bytes, received_at) VALUES (?, ?, ?, ?, ?)",
                (digest, key, sop_instance_uid, len(data), now),
            )
        return target

    def _series(self, key: str, study: str, series: str, last: float) -> SpooledSeries:
        rows = self._db.execute(
            "SELECT content_sha256 FROM instances WHERE series_key = ? ORDER BY content_sha256",
            (key,),
        ).fetchall()
        digest = hashlib.sha256("\n".join(r[0] for r in rows).encode()).hexdigest()
        return SpooledSeries(key, study, series, self.series_dir(key), len(rows), digest, last)

    def stable_series(self, stable_age_s: float, now: float | None = None) -> list[SpooledSeries]:
        """Series with no new arrival for ``stable_age_s`` that were not announced since."""
        now = time.time() if now is None else now
        with self._lock:
            rows = self._db.execute(
                "SELECT series_key, study_uid, series_uid, last_arrival FROM series"
                " WHERE announced_at IS NULL AND last_arrival <= ? ORDER BY last_arrival",
                (now - stable_age_s,),
            ).fetchall()
            return [self._series(*row) for row in rows]

    def mark_announced(self, series: SpooledSeries, now: float | None = None) -> bool:
        """Records that ``series`` was handed on; False if an instance arrived meanwhile."""
        now = time.time() if now is None else now
        with self._tx() as db:
            cur = db.execute(
                "UPDATE series SET announced_at = ? WHERE series_key = ? AND last_arrival = ?",
                (now, series.series_key, series.last_arrival),
            )
            return cur.rowcount == 1

    def get(self, series_key: str) -> SpooledSeries | None:
        with self._lock:
            row = self._db.execute(
                "SELECT series_key, study_uid, series_uid, last_arrival FROM series"
                " WHERE series_key = ?",
                (series_key,),
            ).fetchone()
            return self._series(*row) if row else None

    def forget_series(self, series_key: str, arrived_before: float) -> bool:
        """Deletes a series' files and index entries unless an instance arrived since
        ``arrived_before``; a later arrival then starts the series afresh."""
        with self._series_lock(series_key):
            with self._tx() as db:
                cur = db.execute(
                    "DELETE FROM series WHERE series_key = ? AND last_arrival < ?",
                    (series_key, arrived_before),
                )
                if cur.rowcount != 1:
                    return False
                db.execute("DELETE FROM instances WHERE series_key = ?", (series_key,))
            shutil.rmtree(self.series_dir(series_key), ignore_errors=True)
        return True

    def instance_count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM instances").fetchone()[0])
