"""The coordinator's durable memory: devices, rounds, assignments, accepted updates, checkpoints.

SQLite in WAL mode with synchronous=FULL: a call that returned has reached the disk, so an update
the coordinator acknowledged survives `kill -9` and a power cut. Payloads are stored as bytes in
formats that carry no code (protobuf messages, safetensors), never pickles. One connection behind
a lock: the coordinator's work per call is small next to a network round trip.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    id TEXT PRIMARY KEY, token_hash TEXT NOT NULL, profile BLOB NOT NULL, examples INTEGER NOT NULL,
    fingerprint TEXT NOT NULL, registered_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS rounds (
    round INTEGER PRIMARY KEY, status TEXT NOT NULL, opened_at REAL NOT NULL, deadline_at REAL NOT NULL,
    closed_at REAL, state_version INTEGER NOT NULL, plan TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS assignments (
    round INTEGER NOT NULL, device_id TEXT NOT NULL, task BLOB NOT NULL, status TEXT NOT NULL,
    PRIMARY KEY (round, device_id));
CREATE TABLE IF NOT EXISTS updates (
    round INTEGER NOT NULL, device_id TEXT NOT NULL, task_id TEXT NOT NULL, header BLOB NOT NULL,
    tensors BLOB, wire_bytes INTEGER NOT NULL, received_at REAL NOT NULL, PRIMARY KEY (round, device_id));
CREATE TABLE IF NOT EXISTS checkpoints (
    version INTEGER PRIMARY KEY, round INTEGER NOT NULL, file TEXT NOT NULL, sha256 TEXT NOT NULL,
    created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS rejections (
    id INTEGER PRIMARY KEY AUTOINCREMENT, round INTEGER, device_id TEXT, reason TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS metrics (round INTEGER PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS downloads (round INTEGER PRIMARY KEY, bytes INTEGER NOT NULL);
"""
SQLITE_MAX_INTEGER = 2**63 - 1


@dataclass(frozen=True)
class DeviceRow:
    id: str
    token_hash: str
    profile: bytes
    examples: int
    fingerprint: str


@dataclass(frozen=True)
class RoundRow:
    round: int
    status: str  # open | closed
    opened_at: float
    deadline_at: float
    closed_at: float | None
    state_version: int  # the version the round's devices train from
    plan: dict


@dataclass(frozen=True)
class UpdateRow:
    round: int
    device_id: str
    task_id: str
    header: bytes  # pb.UpdateHeader
    tensors: bytes | None  # safetensors of the dense deltas; None for a seeds upload
    wire_bytes: int


class Ledger:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._lock = threading.RLock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def journal(self) -> tuple[str, int]:
        """(journal mode, synchronous level) in force: the durability rules need ("wal", 2), FULL
        sync, so that a commit that returned is on the disk."""
        return self._query("PRAGMA journal_mode")[0][0], self._query("PRAGMA synchronous")[0][0]

    def add_download(self, round_: int, nbytes: int) -> None:
        """Bytes a state download sent during `round_` (kept here so a restart does not forget them)."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO downloads VALUES (?, ?) ON CONFLICT(round) DO UPDATE SET bytes = bytes + ?",
                (round_, nbytes, nbytes),
            )

    def downloaded(self, round_: int) -> int:
        rows = self._query("SELECT bytes FROM downloads WHERE round = ?", (round_,))
        return rows[0][0] if rows else 0

    # Devices
    def add_device(self, row: DeviceRow) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO devices VALUES (?, ?, ?, ?, ?, ?)",
                (row.id, row.token_hash, row.profile, row.examples, row.fingerprint, time.time()),
            )

    def device(self, device_id: str) -> DeviceRow | None:
        rows = self._query(
            "SELECT id, token_hash, profile, examples, fingerprint FROM devices WHERE id = ?", (device_id,)
        )
        return DeviceRow(*rows[0]) if rows else None

    def devices_by_registration(self) -> list[DeviceRow]:
        return [
            DeviceRow(*r)
            for r in self._query(
                "SELECT id, token_hash, profile, examples, fingerprint FROM devices ORDER BY registered_at, id"
            )
        ]

    def devices(self) -> list[DeviceRow]:
        return [
            DeviceRow(*r)
            for r in self._query("SELECT id, token_hash, profile, examples, fingerprint FROM devices ORDER BY id")
        ]

    # Rounds and assignments
    def open_round(self, row: RoundRow, tasks: dict[str, bytes]) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO rounds VALUES (?, 'open', ?, ?, NULL, ?, ?)",
                (row.round, row.opened_at, row.deadline_at, row.state_version, json.dumps(row.plan)),
            )
            db.executemany(
                "INSERT INTO assignments VALUES (?, ?, ?, 'assigned')",
                [(row.round, device, task) for device, task in tasks.items()],
            )

    def rounds(self) -> list[RoundRow]:
        return [
            RoundRow(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]))
            for r in self._query(
                "SELECT round, status, opened_at, deadline_at, closed_at, state_version, plan "
                "FROM rounds ORDER BY round"
            )
        ]

    def assignments(self, round_: int) -> dict[str, tuple[bytes, str]]:
        """device id -> (pb.Task bytes, status)"""
        return {
            d: (t, s)
            for d, t, s in self._query("SELECT device_id, task, status FROM assignments WHERE round = ?", (round_,))
        }

    def set_assignment_status(self, round_: int, device_id: str, status: str) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE assignments SET status = ? WHERE round = ? AND device_id = ?", (status, round_, device_id)
            )

    # Updates
    def accept_update(self, row: UpdateRow) -> bool:
        """Stores the update; False if this device already has one for the round (a replay)."""
        with self.transaction() as db:
            found = db.execute(
                "SELECT 1 FROM updates WHERE round = ? AND device_id = ?", (row.round, row.device_id)
            ).fetchone()
            if found:
                return False
            db.execute(
                "INSERT INTO updates VALUES (?, ?, ?, ?, ?, ?, ?)",
                (row.round, row.device_id, row.task_id, row.header, row.tensors, row.wire_bytes, time.time()),
            )
            db.execute(
                "UPDATE assignments SET status = 'submitted' WHERE round = ? AND device_id = ?",
                (row.round, row.device_id),
            )
        return True

    def updates(self, round_: int) -> list[UpdateRow]:
        return [
            UpdateRow(*r)
            for r in self._query(
                "SELECT round, device_id, task_id, header, tensors, wire_bytes FROM updates WHERE round = ? "
                "ORDER BY device_id",
                (round_,),
            )
        ]

    def update(self, round_: int, device_id: str) -> UpdateRow | None:
        rows = self._query(
            "SELECT round, device_id, task_id, header, tensors, wire_bytes FROM updates "
            "WHERE round = ? AND device_id = ?",
            (round_, device_id),
        )
        return UpdateRow(*rows[0]) if rows else None

    def reject(self, round_: int | None, device_id: str | None, reason: str) -> None:
        # A hostile claim can name a round past SQLite's INTEGER; the reason text still quotes it.
        round_ = round_ if round_ is None or round_ <= SQLITE_MAX_INTEGER else None
        with self.transaction() as db:
            db.execute(
                "INSERT INTO rejections (round, device_id, reason, at) VALUES (?, ?, ?, ?)",
                (round_, device_id, reason[:1000], time.time()),
            )

    def rejections(self) -> list[tuple[int | None, str | None, str]]:
        return [tuple(r) for r in self._query("SELECT round, device_id, reason FROM rejections ORDER BY id")]

    # Closing a round: one transaction, so a round is closed exactly when its checkpoint is recorded.
    def close_round(self, round_: int, version: int, file: str, sha256: str, metrics: dict) -> None:
        with self.transaction() as db:
            db.execute("UPDATE rounds SET status = 'closed', closed_at = ? WHERE round = ?", (time.time(), round_))
            db.execute(
                "INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?, ?)",
                (version, round_, file, sha256, time.time()),
            )
            db.execute("INSERT OR REPLACE INTO metrics VALUES (?, ?)", (round_, json.dumps(metrics)))

    def close_round_metrics(self, round_: int, metrics: dict) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO metrics VALUES (?, ?)", (round_, json.dumps(metrics)))

    def record_checkpoint(self, version: int, round_: int, file: str, sha256: str) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?, ?)",
                (version, round_, file, sha256, time.time()),
            )

    def checkpoints(self) -> list[tuple[int, int, str, str]]:
        """(version, round, file, sha256), newest first."""
        return [
            tuple(r) for r in self._query("SELECT version, round, file, sha256 FROM checkpoints ORDER BY version DESC")
        ]

    def metrics(self) -> list[dict]:
        return [json.loads(r[0]) for r in self._query("SELECT record FROM metrics ORDER BY round")]
