"""Store-wide named locks: one holder per (store, name) however many processes start.

PostgreSQL: a session-level advisory lock held on a dedicated connection, so the server releases it the
moment the holder's connection goes away (the process died or was killed) and a standby takes over.
SQLite: an ``fcntl`` lock on a file beside the database (``<db>.<name>.lock``), which the kernel releases
when the holder's process ends. An in-memory SQLite store belongs to one process and needs no lock.

The key covers the schema too (``current_schema()``), so stores that share a PostgreSQL database in
different schemas do not block each other.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

LOCK_SQL = "SELECT {fn}(hashtext(current_schema() || ':' || :name))"


class StoreLock:
    """A held lock; :meth:`release` (or process exit) lets the next holder in."""

    def __init__(self, name: str, release: Any, alive: Any = None) -> None:
        self.name = name
        self._release = release
        self._alive = alive

    def alive(self) -> bool:
        """Whether the lock is still held (a PostgreSQL lock ends with its connection)."""
        if self._release is None:
            return False
        try:
            return self._alive() if self._alive is not None else True
        except Exception:  # noqa: BLE001 - any failure to ask means the connection, and the lock, are gone
            return False

    def release(self) -> None:
        if self._release is not None:
            release, self._release = self._release, None
            release()

    def __enter__(self) -> StoreLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _lock_path(engine: Engine, name: str) -> Path | None:
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return None
    return Path(database).expanduser().with_name(f"{Path(database).name}.{name}.lock")


def acquire(engine: Engine, name: str, *, wait: bool = False) -> StoreLock | None:
    """Take lock ``name`` on the store; None when another process holds it (``wait=False``)."""
    if engine.dialect.name == "postgresql":
        conn = engine.connect()
        try:
            fn = "pg_advisory_lock" if wait else "pg_try_advisory_lock"
            got = conn.execute(sa.text(LOCK_SQL.format(fn=fn)), {"name": name}).scalar()
            conn.commit()
        except BaseException:
            conn.close()
            raise
        if wait or got:
            def release() -> None:
                try:
                    conn.execute(sa.text(LOCK_SQL.format(fn="pg_advisory_unlock")), {"name": name})
                    conn.commit()
                except sa.exc.SQLAlchemyError:
                    pass  # the connection is gone (a server restart), and the lock ended with it
                finally:
                    conn.close()
            def alive() -> bool:
                conn.execute(sa.text("SELECT 1"))
                conn.commit()
                return True
            return StoreLock(name, release, alive)
        conn.close()
        return None
    path = _lock_path(engine, name)
    if path is None:
        return StoreLock(name, None)
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise

    def release_file() -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    return StoreLock(name, release_file)


@contextmanager
def held(engine: Engine, name: str) -> Iterator[StoreLock]:
    """Wait for lock ``name`` and hold it for the ``with`` block (migrations)."""
    lock = acquire(engine, name, wait=True)
    assert lock is not None  # waiting always ends holding it
    try:
        yield lock
    finally:
        lock.release()
