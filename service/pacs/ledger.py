"""Durable record of routed series (SQLite): a series is STORED only after the PACS accepted it."""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from service.pacs.ports import SeriesToAnalyse

SCHEMA = """
CREATE TABLE IF NOT EXISTS routes (
    route_id INTEGER PRIMARY KEY AUTOINCREMENT,
    series_key TEXT NOT NULL,
    content_digest TEXT NOT NULL,
    study_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    directory TEXT NOT NULL,
    state TEXT NOT NULL,
    job_id TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    submitted_at REAL,
    last_error TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    UNIQUE (series_key, content_digest)
);
CREATE INDEX IF NOT EXISTS routes_due ON routes(state, next_attempt_at);
"""


class RouteState(StrEnum):
    PENDING = "PENDING"      # waiting to be submitted
    SUBMITTED = "SUBMITTED"  # job queued or running
    STORED = "STORED"        # every result accepted by the PACS (terminal)
    FAILED = "FAILED"        # gave up after max attempts (terminal until re-routed)


@dataclass(frozen=True)
class Route:
    route_id: int
    series: SeriesToAnalyse
    state: RouteState
    job_id: str | None
    attempts: int
    submitted_at: float | None
    last_error: str


class RoutingLedger:
    """Thread-safe; lives in the spool folder next to the spool index."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def enqueue(self, series: SeriesToAnalyse, now: float | None = None) -> RouteState:
        """Records a stable series; a FAILED route of the same content is retried afresh.

        Returns the route's state after the call (STORED means: nothing to do).
        """
        now = time.time() if now is None else now
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO routes(series_key, content_digest, study_uid, series_uid,"
                " directory, state, next_attempt_at, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (series.series_key, series.content_digest, series.study_uid, series.series_uid,
                 str(series.directory), RouteState.PENDING.value, now, now, now),
            )
            self._db.execute(
                "UPDATE routes SET state = ?, attempts = 0, next_attempt_at = ?, updated_at = ?"
                " WHERE series_key = ? AND content_digest = ? AND state = ?",
                (RouteState.PENDING.value, now, now, series.series_key, series.content_digest,
                 RouteState.FAILED.value),
            )
            row = self._db.execute(
                "SELECT state FROM routes WHERE series_key = ? AND content_digest = ?",
                (series.series_key, series.content_digest),
            ).fetchone()
        return RouteState(row[0])

    def due(self, now: float | None = None, limit: int = 256) -> list[Route]:
        """Non-terminal routes whose next attempt is due, oldest first."""
        now = time.time() if now is None else now
        with self._lock:
            rows = self._db.execute(
                "SELECT route_id, series_key, study_uid, series_uid, directory, content_digest,"
                " state, job_id, attempts, submitted_at, last_error FROM routes"
                " WHERE state IN (?, ?) AND next_attempt_at <= ? ORDER BY route_id LIMIT ?",
                (RouteState.PENDING.value, RouteState.SUBMITTED.value, now, limit),
            ).fetchall()
        return [
            Route(r[0], SeriesToAnalyse(r[1], r[2], r[3], Path(r[4]), r[5]), RouteState(r[6]),
                  r[7], r[8], r[9], r[10])
            for r in rows
        ]

    def _update(self, route_id: int, sql: str, args: tuple[object, ...]) -> None:
        with self._lock:
            self._db.execute(f"UPDATE routes SET {sql}, updated_at = ? WHERE route_id = ?",  # noqa: S608
                             (*args, time.time(), route_id))

    def mark_submitted(self, route_id: int, job_id: str, now: float, poll_at: float) -> None:
        self._update(route_id, "state = ?, job_id = ?, submitted_at = ?, next_attempt_at = ?",
                     (RouteState.SUBMITTED.value, job_id, now, poll_at))

    def poll_later(self, route_id: int, at: float) -> None:
        self._update(route_id, "next_attempt_at = ?", (at,))

    def mark_stored(self, route_id: int) -> None:
        self._update(route_id, "state = ?, last_error = ''", (RouteState.STORED.value,))

    def mark_attempt_failed(
        self, route_id: int, error: str, retry_at: float | None, resubmit: bool
    ) -> None:
        """Counts a failed attempt; ``retry_at`` None = give up (FAILED)."""
        if retry_at is None:
            self._update(route_id, "state = ?, attempts = attempts + 1, last_error = ?",
                         (RouteState.FAILED.value, error[:500]))
        elif resubmit:
            self._update(
                route_id,
                "state = ?, job_id = NULL, attempts = attempts + 1, last_error = ?,"
                " next_attempt_at = ?",
                (RouteState.PENDING.value, error[:500], retry_at),
            )
        else:
            self._update(route_id, "attempts = attempts + 1, last_error = ?, next_attempt_at = ?",
                         (error[:500], retry_at))

    def stored_series(self, stored_before: float) -> list[str]:
        """Series whose results were all stored before ``stored_before`` and that have no
        route in progress (candidates for pruning the spool)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT series_key FROM routes GROUP BY series_key"
                " HAVING SUM(state IN (?, ?)) = 0 AND MAX(updated_at) < ?"
                " AND SUM(state = ?) > 0",
                (RouteState.PENDING.value, RouteState.SUBMITTED.value, stored_before,
                 RouteState.STORED.value),
            ).fetchall()
        return [str(r[0]) for r in rows]

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM routes GROUP BY state").fetchall()
        return {str(state): int(n) for state, n in rows}
