"""Shared fixtures.

Storage tests run on SQLite and on PostgreSQL. PostgreSQL comes from TEST_DATABASE_URL or the local server
at 127.0.0.1:5432 (database ``test``, trust auth). Each test gets its own schema, so tests never see each
other's rows. Without a server the PostgreSQL half skips with the reason - except in CI (CI=true), where an
unreachable server fails the run.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import settings

# Property tests explore new random examples on every developer run; CI replays a fixed derivation of the
# examples so a landing run never fails on a case nobody has seen (the failures found locally become
# regression tests instead).
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("CI", "").lower() == "true":
    settings.load_profile("ci")

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # benchmarks/ (NAB scoring, scenario streams) is importable, not installed
    sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared"
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the test with the reason when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"../shared not found ({path}): real recorded data lives there; CI always has it")
    return path


@pytest.fixture
def shared() -> Path:
    return shared_path()


def _pg_base_url() -> str:
    from storage.database import resolve_url

    return resolve_url(os.environ.get("TEST_DATABASE_URL") or DEFAULT_PG)


_pg_state: dict[str, str | None] = {}


def _pg_unavailable_reason() -> str | None:
    if "reason" not in _pg_state:
        try:
            engine = sa.create_engine(_pg_base_url(), connect_args={"connect_timeout": 3})
            with engine.connect() as conn:
                conn.execute(sa.text("select 1"))
            engine.dispose()
            _pg_state["reason"] = None
        except Exception as exc:  # noqa: BLE001 - any failure to connect means "no server here"
            _pg_state["reason"] = f"PostgreSQL not reachable at {_pg_base_url()}: {type(exc).__name__}"
    return _pg_state["reason"]


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh, private schema (dropped afterwards)."""
    reason = _pg_unavailable_reason()
    if reason:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} - CI must run the PostgreSQL tests")
        pytest.skip(reason)
    base = _pg_base_url()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.sqlite'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Parametrizes a test over both backends; use for every storage test."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    """A migrated engine on each backend."""
    from storage.database import open_store

    eng = open_store(db_url)
    try:
        yield eng
    finally:
        eng.dispose()
