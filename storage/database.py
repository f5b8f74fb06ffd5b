"""Engine, sessions and schema migrations.

The store is a SQLite file in the user's data directory unless ``DATABASE_URL`` (or ``--db``) names
another; PostgreSQL is the scale-out path. The schema is owned by Alembic: :func:`upgrade` brings any
database to the newest revision and is called on every start, so a user never runs ``create_all``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from platformdirs import user_data_dir
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlmodel import Session

from storage.errors import StorageError

APP_NAME = "incident-monitor"
MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def default_database_path() -> Path:
    """Where the embedded SQLite store lives when nothing else is configured."""
    return Path(user_data_dir(APP_NAME, appauthor=False)) / "monitor.sqlite"


def resolve_url(url: str | None = None) -> str:
    """The URL to use: an explicit one, else ``DATABASE_URL``, else the per-user SQLite file.

    ``postgresql://`` and ``postgres://`` select the psycopg 3 driver, which is the one we install.

    >>> resolve_url("postgres://u@h/db")
    'postgresql+psycopg://u@h/db'
    >>> resolve_url("sqlite:///x.db")
    'sqlite:///x.db'
    """
    url = url or os.environ.get("DATABASE_URL") or f"sqlite:///{default_database_path()}"
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def redact(url: str) -> str:
    """The URL with any password hidden, for logs and messages.

    >>> redact("postgresql+psycopg://bob:secret@db/x")
    'postgresql+psycopg://bob:***@db/x'
    """
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


def make_engine(url: str | None = None, **kwargs: Any) -> Engine:
    """Create an engine; for SQLite also create the folder and turn on WAL and foreign keys."""
    url = resolve_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StorageError(
            f"DATABASE_URL is not a database URL ({url[:40]!r}): use sqlite:///PATH or postgresql://USER@HOST/DB"
        ) from exc
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise StorageError(
            f"database URL scheme {parsed.drivername!r} is not supported: use sqlite:///PATH or "
            "postgresql://USER@HOST/DB"
        )
    try:
        if backend == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            kwargs.setdefault("connect_args", {"timeout": 30})
            engine = sa.create_engine(url, **kwargs)
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            kwargs.setdefault("pool_pre_ping", True)
            engine = sa.create_engine(url, **kwargs)
    except (ImportError, NoSuchModuleError) as exc:
        raise StorageError(f"database driver for {parsed.drivername!r} is not installed ({exc}): "
                           "use postgresql+psycopg:// (installed) or sqlite:///PATH") from exc
    except OSError as exc:
        raise StorageError(f"cannot create the folder of {redact(url)} ({exc.strerror}): check the path") from exc
    return engine


def store_exists(url: str | None = None) -> bool:
    """Whether the store at ``url`` is there already (a SQLite file; a server database always counts)."""
    parsed = make_url(resolve_url(url))
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return True
    return Path(parsed.database).expanduser().is_file()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the dashboard read while the bot writes; NORMAL sync is safe with WAL.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _alembic_config(connection: sa.Connection | None = None) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations up to ``revision``; cheap when the schema is already current."""
    from alembic import command

    from storage.locks import held

    try:
        # Instances starting together (a rolling deploy, two replicas) migrate one after the other; the
        # second finds the schema current and does nothing.
        with held(engine, "migrations"), engine.begin() as connection:
            command.upgrade(_alembic_config(connection), revision)
    except OperationalError as exc:
        raise StorageError(
            f"cannot reach the database at {redact(str(engine.url))}: {exc.orig}; "
            "check DATABASE_URL (or --db) and that the server is running"
        ) from exc


def schema_behind(engine: Engine) -> bool:
    """Whether the store's schema is older than this code's (read-only: nothing is migrated).

    Fails as a one-line :class:`StorageError` when the database cannot be reached.
    """
    try:
        return current_revision(engine) != head_revision()
    except OperationalError as exc:
        raise StorageError(
            f"cannot reach the database at {redact(str(engine.url))}: {exc.orig}; "
            "check DATABASE_URL (or --db) and that the server is running"
        ) from exc


# Read-only commands check the schema revision on every start; alembic's runtime and script modules cost
# about 0.2 s of CPU to import, more than a small export, so the check reads the version table and the
# migration files directly (tests/test_storage.py holds both equal to alembic's answers).
_REVISION_LINE = re.compile(r"^(down_revision|revision)\b[^=]*=(.*)$", re.M)


def current_revision(engine: Engine) -> str | None:
    """The store's schema revision, as alembic records it (None for a store never migrated)."""
    with engine.connect() as connection:
        if not sa.inspect(connection).has_table("alembic_version"):
            return None
        versions = connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalars().all()
    return ",".join(sorted(versions)) or None  # one row on a linear history; several never match the head


def head_revision() -> str | None:
    """The newest revision of the migrations this code carries."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        for name, value in _REVISION_LINE.findall(path.read_text(encoding="utf-8")):
            found = re.findall(r"""['"]([^'"]+)['"]""", value)
            (revisions if name == "revision" else parents).update(found)
    heads = revisions - parents
    if len(heads) == 1:
        return heads.pop()
    from alembic.script import ScriptDirectory  # a layout the scan does not know: ask alembic

    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def open_store(url: str | None = None, *, migrate: bool = True, must_exist: bool = False) -> Engine:
    """The engine every command uses: resolved URL, schema brought up to date.

    ``must_exist`` is for commands that only read: a mistyped SQLite path is an error, not a new empty store.
    """
    if must_exist and not store_exists(url):
        raise StorageError(
            f"no store at {redact(resolve_url(url))}: check --db / DATABASE_URL (a store is created by import, "
            "replay, collect, run or db upgrade)"
        )
    engine = make_engine(url)
    if migrate:
        upgrade(engine)
    return engine


def open_existing_store(url: str | None = None) -> Engine:
    """The engine of a store that must already exist, for read-only commands: never creates a SQLite file,
    never migrates; a store behind the code's schema gets one line naming `db upgrade`."""
    engine = open_store(url, migrate=False, must_exist=True)
    if schema_behind(engine):
        raise StorageError(
            f"the store at {redact(str(engine.url))} is at schema revision {current_revision(engine) or 'none'}, "
            f"this version reads {head_revision()}: run `incident-monitor db upgrade` first"
        )
    return engine


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error."""
    session = Session(engine, expire_on_commit=False)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
