"""`--data-dir`: the emulator's state in a SQLite file, written through at every change.

Every change an RPC or a delivery makes is one transaction (a batch, a purge or a queue's
deletion one in all) in write-ahead-log mode, committed before the answer goes out: the state
survives SIGTERM and kill -9 alike. With `synchronous=NORMAL` an operating-system crash or a
power cut may lose the last transactions, never the file. Rows hold Google's own protobuf
messages, serialized, beside the counters Cloud Tasks keeps for a task. A lock on the
directory keeps a second emulator out.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from google.cloud import scheduler_v1, tasks_v2
from google.protobuf.message import DecodeError

from fastapi_cloud_tasks.engine.cloud_tasks import TaskRecord
from fastapi_cloud_tasks.engine.store import TasksState
from fastapi_cloud_tasks.exceptions import FastAPICloudTasksError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock, one emulator per directory by hand
    fcntl = None  # type: ignore[assignment]

__all__ = ["FILE_NAME", "SqliteStore", "StateError"]

FILE_NAME = "emulator-state.sqlite3"
LOCK_NAME = "emulator-state.lock"
APPLICATION_ID = 0x46435445  # "FCTE" in SQLite's header: this file is the emulator's
SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE queues (name TEXT PRIMARY KEY, queue BLOB NOT NULL);
CREATE TABLE deleted_queues (name TEXT PRIMARY KEY);
CREATE TABLE tasks (
    name TEXT PRIMARY KEY, queue TEXT NOT NULL, seq INTEGER NOT NULL,
    created INTEGER NOT NULL, schedule_time INTEGER NOT NULL,
    dispatch_count INTEGER NOT NULL, response_count INTEGER NOT NULL,
    execution_count INTEGER NOT NULL, previous_response INTEGER, first_attempt INTEGER,
    retry_config BLOB, task BLOB NOT NULL
);
CREATE INDEX tasks_by_queue ON tasks (queue);
CREATE TABLE reserved_names (name TEXT PRIMARY KEY, until INTEGER NOT NULL);
CREATE TABLE jobs (name TEXT PRIMARY KEY, seq INTEGER NOT NULL, job BLOB NOT NULL);
"""
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


class StateError(FastAPICloudTasksError):
    """Raised when `--data-dir` cannot hold the emulator's state: a directory that cannot be
    written or that another emulator uses, or a file that is not the emulator's or is damaged."""


class SqliteStore:
    """Implements the engines' `Store` on `DIRECTORY/emulator-state.sqlite3`."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / FILE_NAME
        self._mutex = threading.RLock()
        self._depth = 0  # nested atomic() blocks open
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._lock_file = open(self.directory / LOCK_NAME, "ab")  # noqa: SIM115
        except OSError as exc:
            raise StateError(f"--data-dir {str(directory)!r} cannot be used: "
                             f"{exc.strerror or exc}. Give a directory you can write.") from None
        try:
            if fcntl is not None:
                fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock_file.close()
            raise StateError(f"--data-dir {str(directory)!r} is in use by another emulator: "
                             "stop it, or give another directory.") from None
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None,
                                       check_same_thread=False)
            self._open()
        except sqlite3.Error as exc:
            self.close()
            raise self._damaged(exc) from None
        except StateError:
            self.close()
            raise

    def _damaged(self, exc: Exception) -> StateError:
        return StateError(f"{str(self.path)!r} is not a readable emulator state file ({exc}): "
                          "move it away, or give another --data-dir.")

    def _open(self) -> None:
        db = self._db
        # Read before anything is written: a foreign database must stay as it was.
        application_id = db.execute("PRAGMA application_id").fetchone()[0]
        version = db.execute("PRAGMA user_version").fetchone()[0]
        tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if application_id == 0 and tables == 0:  # a new file
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(f"BEGIN; {SCHEMA} PRAGMA application_id={APPLICATION_ID}; "
                             f"PRAGMA user_version={SCHEMA_VERSION}; COMMIT;")
        elif application_id != APPLICATION_ID:
            raise StateError(f"{str(self.path)!r} is a SQLite database, not an emulator state "
                             "file: move it away, or give another --data-dir.")
        elif version != SCHEMA_VERSION:
            raise StateError(f"{str(self.path)!r} holds state format {version}; this emulator "
                             f"reads format {SCHEMA_VERSION}: move it away, or give another "
                             "--data-dir.")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # WAL: a killed process loses nothing

    def close(self) -> None:
        with contextlib.suppress(AttributeError, sqlite3.Error):
            self._db.close()
        self._lock_file.close()

    # -- writes: the engines call these under their lock -----------------------------------

    @contextlib.contextmanager
    def atomic(self) -> Iterator[None]:
        with self._mutex:
            self._depth += 1
            if self._depth == 1:
                self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            finally:  # committed even on an error: memory kept what was done before it
                self._depth -= 1
                if self._depth == 0:
                    self._db.execute("COMMIT")

    def _write(self, *statements: tuple[str, tuple[Any, ...]]) -> None:
        with self.atomic():
            for sql, parameters in statements:
                self._db.execute(sql, parameters)

    def put_queue(self, queue: tasks_v2.Queue) -> None:
        self._write(("INSERT OR REPLACE INTO queues VALUES (?, ?)",
                     (queue.name, tasks_v2.Queue.serialize(queue))))

    def delete_queue(self, name: str) -> None:
        self._write(("DELETE FROM queues WHERE name = ?", (name,)),
                    ("DELETE FROM tasks WHERE queue = ?", (name,)),
                    ("INSERT OR REPLACE INTO deleted_queues VALUES (?)", (name,)))

    def put_task(self, record: TaskRecord) -> None:
        retry = record.retry_config
        self._write(("INSERT OR REPLACE INTO tasks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (
            record.name, record.queue_name, record.seq, _micros(record.created),
            _micros(record.schedule_time), record.dispatch_count, record.response_count,
            record.execution_count, record.previous_response,
            None if record.first_attempt_time is None else _micros(record.first_attempt_time),
            None if retry is None else tasks_v2.RetryConfig.serialize(retry),
            tasks_v2.Task.pb(record.task).SerializeToString(),
        )))

    def delete_task(self, name: str, reserved_until: datetime) -> None:
        self._write(("DELETE FROM tasks WHERE name = ?", (name,)),
                    ("INSERT OR REPLACE INTO reserved_names VALUES (?, ?)",
                     (name, _micros(reserved_until))))

    def put_job(self, seq: int, job: scheduler_v1.Job) -> None:
        self._write(("INSERT OR REPLACE INTO jobs VALUES (?, ?, ?)",
                     (job.name, seq, scheduler_v1.Job.serialize(job))))

    def delete_job(self, name: str) -> None:
        self._write(("DELETE FROM jobs WHERE name = ?", (name,)))

    # -- loading, once at start ------------------------------------------------------------

    def load_tasks(self, now: datetime) -> TasksState:
        with self._mutex, self._reading():
            self._write(("DELETE FROM reserved_names WHERE until <= ?", (_micros(now),)))
            db = self._db
            state = TasksState(
                queues=[tasks_v2.Queue.deserialize(blob)
                        for (blob,) in db.execute("SELECT queue FROM queues ORDER BY name")],
                deleted_queues=[name for (name,) in db.execute("SELECT name FROM deleted_queues")],
                reserved={name: _time(until) for name, until
                          in db.execute("SELECT name, until FROM reserved_names")},
            )
            for row in db.execute("SELECT * FROM tasks ORDER BY seq"):
                state.tasks.append(_task_record(*row))
            return state

    def load_jobs(self) -> Iterable[tuple[int, scheduler_v1.Job]]:
        with self._mutex, self._reading():
            return [(seq, scheduler_v1.Job.deserialize(blob))
                    for seq, blob in self._db.execute("SELECT seq, job FROM jobs ORDER BY seq")]

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """A damaged page or row found while loading is a StateError, not a traceback."""
        try:
            yield
        except (sqlite3.Error, DecodeError, ValueError, TypeError) as exc:
            raise self._damaged(exc) from None


def _task_record(
    name: str, queue: str, seq: int, created: int, schedule_time: int, dispatch_count: int,
    response_count: int, execution_count: int, previous_response: int | None,
    first_attempt: int | None, retry_config: bytes | None, task_blob: bytes,
) -> TaskRecord:
    task = tasks_v2.Task.deserialize(task_blob)
    return TaskRecord(
        task=task,
        # The request as created is kept only by the pytest harness, which keeps no state.
        request=tasks_v2.CreateTaskRequest(parent=queue, task=task),
        seq=seq, created=_time(created), name=name, queue_name=queue,
        schedule_time=_time(schedule_time), dispatch_count=dispatch_count,
        response_count=response_count, execution_count=execution_count,
        previous_response=previous_response,
        first_attempt_time=None if first_attempt is None else _time(first_attempt),
        retry_config=(None if retry_config is None
                      else tasks_v2.RetryConfig.deserialize(retry_config)),
    )


def _micros(when: datetime) -> int:
    return (when - _EPOCH) // _MICROSECOND


def _time(micros: int) -> datetime:
    return _EPOCH + micros * _MICROSECOND
