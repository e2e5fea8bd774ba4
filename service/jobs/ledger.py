"""The job ledger: one table, SQLite (WAL) by default.

The schema and every query use portable SQL (TEXT, INTEGER, DOUBLE PRECISION, no upsert
dialects, ``?`` placeholders translated by :func:`_sql`), so a PostgreSQL ledger is the same class
over a DB-API connection with ``paramstyle = "format"``. State changes of a running job are guarded
by its lease owner, so a server that lost its lease cannot overwrite another one's result.
"""

# Queries are assembled only from constants in this module; values always go through placeholders.
# ruff: noqa: S608

from __future__ import annotations

import base64
import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from service.domain.errors import InvalidInput
from service.jobs.model import Job, JobRequest, JobState, Progress

SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS jobs (
        job_id TEXT PRIMARY KEY,
        idempotency_key TEXT NOT NULL UNIQUE,
        state TEXT NOT NULL,
        request_json TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL,
        not_before DOUBLE PRECISION NOT NULL DEFAULT 0,
        lease_owner TEXT,
        lease_expires_at DOUBLE PRECISION,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        stage TEXT NOT NULL DEFAULT '',
        tiles_done INTEGER NOT NULL DEFAULT 0,
        tiles_total INTEGER NOT NULL DEFAULT 0,
        failure_reason TEXT NOT NULL DEFAULT '',
        summary_json TEXT,
        artifacts_json TEXT NOT NULL DEFAULT '[]',
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS jobs_state_idx ON jobs (state, not_before)",
    "CREATE INDEX IF NOT EXISTS jobs_created_idx ON jobs (created_at, job_id)",
)

_COLUMNS = (
    "job_id, idempotency_key, state, request_json, attempts, max_attempts, not_before, "
    "lease_owner, lease_expires_at, cancel_requested, stage, tiles_done, tiles_total, "
    "failure_reason, summary_json, artifacts_json, created_at, updated_at"
)


def _row_to_job(row: Sequence[Any]) -> Job:
    return Job(
        job_id=row[0],
        idempotency_key=row[1],
        state=JobState(row[2]),
        request=JobRequest.from_json(row[3]),
        attempts=int(row[4]),
        max_attempts=int(row[5]),
        not_before=float(row[6]),
        lease_owner=row[7],
        lease_expires_at=None if row[8] is None else float(row[8]),
        cancel_requested=bool(row[9]),
        progress=Progress(stage=row[10], tiles_done=int(row[11]), tiles_total=int(row[12])),
        failure_reason=row[13],
        summary=None if row[14] is None else json.loads(row[14]),
        artifacts=tuple(json.loads(row[15])),
        created_at=float(row[16]),
        updated_at=float(row[17]),
    )


def encode_page_token(created_at: float, job_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at!r}|{job_id}".encode()).decode()


def decode_page_token(token: str) -> tuple[float, str]:
    try:
        created, job_id = base64.urlsafe_b64decode(token.encode()).decode().split("|", 1)
        return float(created), job_id
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("page_token is not one this server issued") from exc


class SqlLedger:
    """Job persistence over a DB-API connection (SQLite by default; see module docstring).

    Not thread-safe: the server calls it from its event-loop thread only.
    """

    def __init__(self, conn: Any, paramstyle: str = "qmark") -> None:
        self._conn = conn
        self._paramstyle = paramstyle
        for statement in SCHEMA:
            self._execute(statement)
        self._commit()

    @classmethod
    def open_sqlite(cls, path: Path) -> SqlLedger:
        """A SQLite ledger in WAL mode (readers never block the writer)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), timeout=30.0)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return cls(conn)

    def close(self) -> None:
        self._conn.close()

    # -- plumbing ---------------------------------------------------------------------------
    def _sql(self, query: str) -> str:
        return query if self._paramstyle == "qmark" else query.replace("?", "%s")

    def _execute(self, query: str, args: Sequence[Any] = ()) -> Any:
        cur = self._conn.cursor()
        cur.execute(self._sql(query), tuple(args))
        return cur

    def _commit(self) -> None:
        self._conn.commit()

    def _one(self, where: str, args: Sequence[Any]) -> Job | None:
        row = self._execute(f"SELECT {_COLUMNS} FROM jobs WHERE {where}", args).fetchone()
        return None if row is None else _row_to_job(row)

    def _update(self, sets: str, where: str, args: Sequence[Any]) -> int:
        cur = self._execute(f"UPDATE jobs SET {sets} WHERE {where}", args)
        self._commit()
        return int(cur.rowcount)

    # -- queries ------------------------------------------------------------------------------
    def get(self, job_id: str) -> Job | None:
        return self._one("job_id = ?", (job_id,))

    def get_by_key(self, idempotency_key: str) -> Job | None:
        return self._one("idempotency_key = ?", (idempotency_key,))

    def count_in(self, states: Iterable[JobState]) -> int:
        names = [s.value for s in states]
        marks = ", ".join("?" for _ in names)
        row = self._execute(f"SELECT COUNT(*) FROM jobs WHERE state IN ({marks})", names)
        return int(row.fetchone()[0])

    def list_jobs(
        self, states: Sequence[JobState], limit: int, page_token: str = ""
    ) -> tuple[list[Job], str]:
        """Jobs newest first; returns the page and the token of the next page ('' at the end)."""
        where: list[str] = ["1 = 1"]
        args: list[Any] = []
        if states:
            where.append(f"state IN ({', '.join('?' for _ in states)})")
            args.extend(s.value for s in states)
        if page_token:
            created, job_id = decode_page_token(page_token)
            where.append("(created_at < ? OR (created_at = ? AND job_id < ?))")
            args.extend([created, created, job_id])
        rows = self._execute(
            f"SELECT {_COLUMNS} FROM jobs WHERE {' AND '.join(where)} "
            "ORDER BY created_at DESC, job_id DESC LIMIT ?",
            [*args, limit + 1],
        ).fetchall()
        jobs = [_row_to_job(r) for r in rows[:limit]]
        more = len(rows) > limit
        return jobs, encode_page_token(jobs[-1].created_at, jobs[-1].job_id) if more else ""

    def owned_by(self, owner: str) -> list[Job]:
        rows = self._execute(
            f"SELECT {_COLUMNS} FROM jobs WHERE state = ? AND lease_owner = ?",
            (JobState.RUNNING.value, owner),
        ).fetchall()
        return [_row_to_job(r) for r in rows]

    # -- transitions ----------------------------------------------------------------------------
    def insert_or_get(
        self, job_id: str, idempotency_key: str, request: JobRequest, max_attempts: int
    ) -> tuple[Job, bool]:
        """Inserts a QUEUED job, or returns the job that already has this key (created=False)."""
        existing = self.get_by_key(idempotency_key)
        if existing is not None:
            return existing, False
        now = time.time()
        try:
            self._execute(
                "INSERT INTO jobs (job_id, idempotency_key, state, request_json, max_attempts, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (job_id, idempotency_key, JobState.QUEUED.value, request.to_json(),
                 max_attempts, now, now),
            )
            self._commit()
        except Exception:  # a concurrent insert of the same key won the unique constraint
            self._conn.rollback()
            existing = self.get_by_key(idempotency_key)
            if existing is None:
                raise
            return existing, False
        job = self.get(job_id)
        assert job is not None
        return job, True

    def claim_next(self, owner: str, lease_s: float) -> Job | None:
        """Moves the oldest due QUEUED job to RUNNING under ``owner``'s lease."""
        now = time.time()
        while True:
            row = self._execute(
                "SELECT job_id FROM jobs WHERE state = ? AND not_before <= ? "
                "ORDER BY created_at, job_id LIMIT 1",
                (JobState.QUEUED.value, now),
            ).fetchone()
            if row is None:
                return None
            claimed = self._update(
                "state = ?, lease_owner = ?, lease_expires_at = ?, attempts = attempts + 1, "
                "stage = '', tiles_done = 0, tiles_total = 0, updated_at = ?",
                "job_id = ? AND state = ?",
                (JobState.RUNNING.value, owner, now + lease_s, now, row[0],
                 JobState.QUEUED.value),
            )
            if claimed:
                return self.get(row[0])

    def heartbeat(self, job_id: str, owner: str, lease_s: float, progress: Progress) -> bool:
        """Extends the lease and records progress; False if the lease was lost."""
        now = time.time()
        return bool(self._update(
            "lease_expires_at = ?, stage = ?, tiles_done = ?, tiles_total = ?, updated_at = ?",
            "job_id = ? AND state = ? AND lease_owner = ?",
            (now + lease_s, progress.stage, progress.tiles_done, progress.tiles_total, now,
             job_id, JobState.RUNNING.value, owner),
        ))

    def mark_done(
        self, job_id: str, owner: str | None, summary: dict[str, Any], artifacts: Sequence[str]
    ) -> bool:
        owner_clause, args = self._owner_clause(owner)
        return bool(self._update(
            "state = ?, summary_json = ?, artifacts_json = ?, lease_owner = NULL, "
            "lease_expires_at = NULL, failure_reason = '', updated_at = ?",
            f"job_id = ? AND state IN (?, ?){owner_clause}",
            (JobState.DONE.value, json.dumps(summary), json.dumps(list(artifacts)), time.time(),
             job_id, JobState.RUNNING.value, JobState.QUEUED.value, *args),
        ))

    def mark_failed(self, job_id: str, owner: str | None, reason: str) -> bool:
        owner_clause, args = self._owner_clause(owner)
        return bool(self._update(
            "state = ?, failure_reason = ?, lease_owner = NULL, lease_expires_at = NULL, "
            "updated_at = ?",
            f"job_id = ? AND state IN (?, ?){owner_clause}",
            (JobState.FAILED.value, reason, time.time(), job_id, JobState.RUNNING.value,
             JobState.QUEUED.value, *args),
        ))

    def mark_cancelled(self, job_id: str, owner: str | None) -> bool:
        owner_clause, args = self._owner_clause(owner)
        return bool(self._update(
            "state = ?, lease_owner = NULL, lease_expires_at = NULL, updated_at = ?",
            f"job_id = ? AND state IN (?, ?){owner_clause}",
            (JobState.CANCELLED.value, time.time(), job_id, JobState.RUNNING.value,
             JobState.QUEUED.value, *args),
        ))

    def requeue(
        self, job_id: str, owner: str, delay_s: float, reason: str, refund_attempt: bool = False
    ) -> bool:
        """RUNNING → QUEUED (due after ``delay_s``); ``refund_attempt`` for server shutdowns."""
        now = time.time()
        refund = " - 1" if refund_attempt else ""
        return bool(self._update(
            f"state = ?, attempts = attempts{refund}, not_before = ?, failure_reason = ?, "
            "lease_owner = NULL, lease_expires_at = NULL, updated_at = ?",
            "job_id = ? AND state = ? AND lease_owner = ?",
            (JobState.QUEUED.value, now + delay_s, reason, now, job_id, JobState.RUNNING.value,
             owner),
        ))

    def request_cancel(self, job_id: str) -> Job | None:
        """QUEUED → CANCELLED at once; RUNNING gets ``cancel_requested`` for its executor."""
        now = time.time()
        self._update(
            "state = ?, updated_at = ?", "job_id = ? AND state = ?",
            (JobState.CANCELLED.value, now, job_id, JobState.QUEUED.value),
        )
        self._update(
            "cancel_requested = 1, updated_at = ?", "job_id = ? AND state = ?",
            (now, job_id, JobState.RUNNING.value),
        )
        return self.get(job_id)

    def requeue_expired(self) -> list[str]:
        """RUNNING jobs whose lease expired: QUEUED again, or FAILED when out of attempts."""
        now = time.time()
        rows = self._execute(
            "SELECT job_id, attempts, max_attempts, cancel_requested FROM jobs "
            "WHERE state = ? AND lease_expires_at < ?",
            (JobState.RUNNING.value, now),
        ).fetchall()
        for job_id, attempts, max_attempts, cancel_requested in rows:
            where = "job_id = ? AND state = ? AND lease_expires_at < ?"
            guard = (job_id, JobState.RUNNING.value, now)
            if cancel_requested:
                self._update("state = ?, lease_owner = NULL, updated_at = ?", where,
                             (JobState.CANCELLED.value, now, *guard))
            elif attempts >= max_attempts:
                self._update(
                    "state = ?, failure_reason = ?, lease_owner = NULL, updated_at = ?", where,
                    (JobState.FAILED.value,
                     f"worker lost (lease expired) after {attempts} attempts", now, *guard),
                )
            else:
                self._update(
                    "state = ?, failure_reason = ?, lease_owner = NULL, lease_expires_at = NULL, "
                    "updated_at = ?", where,
                    (JobState.QUEUED.value, "requeued: lease expired", now, *guard),
                )
        return [r[0] for r in rows]

    @staticmethod
    def _owner_clause(owner: str | None) -> tuple[str, tuple[Any, ...]]:
        return ("", ()) if owner is None else (" AND (lease_owner = ? OR lease_owner IS NULL)",
                                               (owner,))
