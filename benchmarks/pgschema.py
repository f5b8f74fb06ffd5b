"""A PostgreSQL schema of a benchmark's own: created, named in the URL's search_path, dropped afterwards.

Every benchmark that measures PostgreSQL uses it, so they agree on the server they look for
(``TEST_DATABASE_URL``, else the local test database), on how an unreachable server is reported, and on
cleaning up after themselves.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from storage.database import resolve_url

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


def base_url() -> str:
    return resolve_url(os.environ.get("TEST_DATABASE_URL") or DEFAULT_URL)


def schema_url(base: str, schema: str) -> str:
    """``base`` with every connection's search_path set to ``schema``."""
    return f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"


@contextmanager
def pg_schema(base: str | None = None, *, name: str | None = None, prefix: str = "bench",
              keep: bool = False) -> Iterator[str | None]:
    """Yield a URL into a fresh schema (or ``name``, created if missing and kept when ``keep``), or None
    when the server cannot be reached (after one line saying so): the caller skips PostgreSQL."""
    base = base or base_url()
    schema = name or f"{prefix}_{uuid.uuid4().hex[:10]}"
    if not schema.isidentifier():
        raise SystemExit(f"PostgreSQL schema {schema!r}: use letters, digits and underscores")
    admin = sa.create_engine(base, connect_args={"connect_timeout": 3})
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    except sa.exc.SQLAlchemyError as exc:
        print(f"PostgreSQL skipped: not reachable at {base} ({type(exc).__name__})")
        admin.dispose()
        yield None
        return
    try:
        yield schema_url(base, schema)
    finally:
        if not keep:
            with admin.begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()
