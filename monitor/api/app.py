"""The read-only HTTP API of DESIGN.md ("Contract: HTTP API") and the dashboard, as one FastAPI app.

Read-only twice over: the routes only read, and every database connection of the app is opened read-only
(SQLite ``PRAGMA query_only``, PostgreSQL ``default_transaction_read_only``). Each request's database work
is cut off after ``[api] query_timeout_ms`` (PostgreSQL ``statement_timeout``; on SQLite a progress handler
interrupts the statement) and answered 503. Page sizes are capped. Every ``/api/`` route needs a bearer
token from ``MONITOR_API_TOKENS``, compared in constant time; ``/healthz``, ``/metrics`` (Prometheus: the
numbers of `status`, no post text), ``/docs`` and the dashboard's static page are open (the page holds no
data; it asks for a token and calls the API with it).

Authors are pseudonymised as in exports (``storage.export.Pseudonymizer``, keyed by ``MONITOR_PSEUDONYM_KEY``):
every ``author_id`` is the keyed hash, handles are dropped and links carry no handle, and the ``author``
filter takes the pseudonym. Serving ids as stored takes an explicit ``raw_authors=True`` (``serve
--raw-authors``).

Errors keep FastAPI's 422 shape, ``{"detail": [{"loc": ["query", FIELD], "msg": ...}]}``, for our own
checks too (a search text, a cursor, a count key), so a client always learns which field to fix.
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures, which use local names.

import hmac
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlmodel import Session, col, select

from monitor.api.config import ApiConfig
from monitor.errors import MonitorError
from monitor.metrics import build_registry
from storage.errors import StorageError
from storage.export import Pseudonymizer
from storage.models import Alert, AlertEventRow
from storage.queries import (
    AuthorPseudonyms,
    CursorError,
    PostFilter,
    find_posts,
    get_post_view,
    get_posts_by_keys,
)
from storage.search import SearchQueryError, highlight_spans

STATIC = Path(__file__).with_name("static")
LABELS = Literal["victim_report", "incident_discussion", "irrelevant"]


class QueryTimeout(Exception):
    pass


def _field_error(status: int, where: str, name: str, message: str) -> HTTPException:
    return HTTPException(status, detail=[{"loc": [where, name], "msg": message}])


def _read_only(engine: sa.Engine) -> None:
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _sqlite_query_only(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.execute("PRAGMA query_only=ON")
    else:
        @event.listens_for(engine, "connect")
        def _pg_read_only(dbapi_connection: Any, _record: Any) -> None:
            # psycopg connections are not autocommit: close the implicit transaction the SET opened.
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SET default_transaction_read_only = on")
            dbapi_connection.commit()


def create_app(engine: sa.Engine, config: ApiConfig | None = None, settings: Any = None, *,
               pseudonymizer: Pseudonymizer | None = None, raw_authors: bool = False) -> FastAPI:
    """The app over an existing store (open it with ``storage.database.open_existing_store``); ``settings``
    (all sections) give ``/metrics`` the X budget and silence limit (default: the defaults).

    Author ids go out pseudonymised by ``pseudonymizer``; ``raw_authors=True`` serves them as stored. One of
    the two is required, so no caller serves raw ids by forgetting an argument.
    """
    if (pseudonymizer is None) == (not raw_authors):
        raise ValueError("create_app needs a pseudonymizer (MONITOR_PSEUDONYM_KEY) or raw_authors=True, not both")
    config = config or ApiConfig()
    authors = AuthorPseudonyms(pseudonymizer) if pseudonymizer is not None else None

    def shown(record: dict[str, Any]) -> dict[str, Any]:
        return pseudonymizer(record) if pseudonymizer is not None else record
    tokens = config.token_list()
    _read_only(engine)
    app = FastAPI(
        title="incident-monitor API",
        description="Read-only access to the monitor's store: posts with full-text search, per-key counts of "
                    "distinct reporters, alerts with their events. Send `Authorization: Bearer TOKEN`.",
        version="1",
    )
    timeout_s = config.query_timeout_ms / 1000

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own body echoes the bad input, which may hold text JSON cannot carry (lone surrogates):
        # name the field and the problem only.
        detail = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "invalid"))} for e in exc.errors()]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(QueryTimeout)
    async def _timeout(_request: Request, _exc: QueryTimeout) -> JSONResponse:
        return JSONResponse({"detail": f"the query ran longer than {config.query_timeout_ms} ms and was stopped: "
                                       "narrow it (a time range, a longer search word)"}, status_code=503)

    def require_token(request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        ok = False
        if scheme.lower() == "bearer" and given:
            candidate = given.strip().encode("utf-8", "replace")
            for token in tokens:  # every token is compared, so timing says nothing about which one is close
                ok |= hmac.compare_digest(candidate, token)
        if not ok:
            raise HTTPException(401, detail="missing or wrong bearer token: send Authorization: Bearer TOKEN",
                                headers={"WWW-Authenticate": "Bearer"})

    def db_session() -> Iterator[Session]:
        with engine.connect() as connection:
            deadline = time.monotonic() + timeout_s
            raw = connection.connection.dbapi_connection
            if engine.dialect.name == "sqlite":
                raw.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)  # type: ignore[union-attr]
            else:
                connection.exec_driver_sql(f"SET statement_timeout = {int(config.query_timeout_ms)}")
            try:
                with Session(bind=connection) as session:
                    yield session
            except (OperationalError, DBAPIError) as exc:
                text = str(getattr(exc, "orig", exc)).lower()
                if "interrupted" in text or "statement timeout" in text or "canceling statement" in text:
                    raise QueryTimeout() from exc
                raise
            finally:
                if engine.dialect.name == "sqlite":
                    raw.set_progress_handler(None, 0)  # type: ignore[union-attr]
                else:
                    connection.rollback()

    auth = [Depends(require_token)]
    SessionDep = Annotated[Session, Depends(db_session)]

    @app.get("/healthz", tags=["health"], summary="200 when the store is reachable")
    def healthz() -> JSONResponse:
        try:
            with engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 - any failure means "not healthy"
            return JSONResponse({"status": "unavailable", "error": type(exc).__name__}, status_code=503)
        return JSONResponse({"status": "ok"})

    metrics_registry = build_registry(engine, settings)

    @app.get("/metrics", tags=["health"], response_class=PlainTextResponse,
             summary="Prometheus metrics: the numbers of `incident-monitor status`, plus process metrics")
    def metrics() -> Response:
        # Sync route: FastAPI runs it in its thread pool, so the store reads never block the event loop.
        return Response(generate_latest(metrics_registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/posts", dependencies=auth, tags=["posts"],
             summary="posts matching the filters, one page; q is Japanese full-text search")
    def posts(
        session: SessionDep,
        q: Annotated[str | None, Query(description="full-text search; one-character words work (株)")] = None,
        source: str | None = None,
        label: LABELS | None = None,
        broker: str | None = None,
        ticker: str | None = None,
        author: Annotated[str | None, Query(description="the author_id the API shows (a pseudonym, a_..., "
                                                    "unless serve runs with --raw-authors)")] = None,
        lang: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: Annotated[int | None, Query(ge=1, le=config.max_page_size)] = None,
        cursor: str | None = None,
        order: Literal["newest", "oldest", "relevance"] | None = None,
    ) -> dict[str, Any]:
        for name, value in (("since", since), ("until", until)):
            if value is not None and value.tzinfo is None:
                raise _field_error(422, "query", name, "needs a UTC offset, e.g. 2025-03-19T15:00:00+09:00")
        try:
            search = PostFilter(q=q or None).search()
        except SearchQueryError as exc:
            raise _field_error(422, "query", "q", str(exc)) from exc
        if author is not None and authors is not None:
            # The client only ever sees pseudonyms; a raw id here would let it test who posted.
            if not author.startswith("a_"):
                raise _field_error(422, "query", "author", "give the author as the API shows it (author_id, a_...): "
                                   "this API pseudonymises authors")
            found = authors.resolve(session, author)
            if not found or (source is not None and source != found[0][0]):
                return {"items": [], "next_cursor": None}
            source, author = found[0]
        flt = PostFilter(since=since, until=until, source=source, label=label, broker=broker, ticker=ticker,
                         author=author, lang=lang, q=q or None)
        try:
            views, next_cursor = find_posts(session, flt, limit=limit or config.page_size,
                                            order=order or "newest", cursor=cursor,
                                            with_mentions=True)
        except SearchQueryError as exc:
            raise _field_error(422, "query", "q", str(exc)) from exc
        except CursorError as exc:
            raise _field_error(422, "query", "cursor", str(exc)) from exc
        items = []
        for view in views:
            item = shown(view.to_record())
            if search is not None:
                item["rank"] = view.rank
                item["highlights"] = [list(span) for span in highlight_spans(view.post.text, search)]
            items.append(item)
        return {"items": items, "next_cursor": next_cursor}

    @app.get("/api/posts/{key:path}", dependencies=auth, tags=["posts"],
             summary="one post by SOURCE:ID, e.g. /api/posts/x:1902345678901234567")
    def post(session: SessionDep, key: str) -> dict[str, Any]:
        source, sep, post_id = key.partition(":")
        if not sep or not source or not post_id:
            raise _field_error(422, "path", "key", "write the post as SOURCE:ID, e.g. x:1902345678901234567")
        view = get_post_view(session, source, post_id)
        if view is None:
            raise HTTPException(404, detail=f"no post {source}:{post_id[:200]} in the store")
        return shown(view.to_record())

    @app.get("/api/counts", dependencies=auth, tags=["counts"],
             summary="distinct reporters of victim reports per bucket, with the baseline's expected values")
    def counts(
        session: SessionDep,
        key: Annotated[str, Query(description="broker:NAME, ticker:CODE or overall")],
        bucket: Annotated[str, Query(description="bucket length: 5m, 1h, 1d ...")] = "1h",
        since: datetime | None = None,
        until: datetime | None = None,
        scope: str | None = None,
    ) -> dict[str, Any]:
        from monitor.durations import parse_duration
        from monitor.research import count_series, parse_key

        for name, value in (("since", since), ("until", until)):
            if value is not None and value.tzinfo is None:
                raise _field_error(422, "query", name, "needs a UTC offset, e.g. 2025-03-19T15:00:00+09:00")
        try:
            parse_key(key)
        except MonitorError as exc:
            raise _field_error(422, "query", "key", str(exc)) from exc
        try:
            step = parse_duration(bucket)
        except MonitorError as exc:
            raise _field_error(422, "query", "bucket", str(exc)) from exc
        try:
            series = count_series(session, key, step, since, until, scope=scope)
        except MonitorError as exc:
            raise _field_error(422, "query", "since", str(exc)) from exc
        return {"key": key, "bucket": bucket, "series": [p.to_json() for p in series]}

    @app.get("/api/alerts", dependencies=auth, tags=["alerts"],
             summary="alerts, newest first, each with its events and sample posts")
    def alerts(session: SessionDep, status: Literal["open", "pending", "resolved", "all"] = "open",
               limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict[str, Any]:
        from monitor.alerts.silences import list_alerts

        rows = list_alerts(session, status, limit)
        events: dict[int, list[dict[str, Any]]] = {}
        if rows:
            for ev in session.exec(select(AlertEventRow)
                                   .where(col(AlertEventRow.alert_id).in_([a.id for a in rows]))
                                   .order_by(col(AlertEventRow.at), col(AlertEventRow.id))).all():
                events.setdefault(ev.alert_id, []).append({**ev.payload, "event": ev.event, "at": ev.at.isoformat()})
        samples = get_posts_by_keys(session, [k for a in rows for k in a.sample_post_ids])
        link = (lambda p: Pseudonymizer.url(p.source, p.post_id, p.url)) if pseudonymizer is not None else None
        return {"items": [_alert_json(a, events.get(a.id, []), samples, link) for a in rows]}  # type: ignore[arg-type]

    @app.exception_handler(StorageError)
    async def _storage(_request: Request, exc: StorageError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    return app


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _alert_json(a: Alert, events: list[dict[str, Any]], samples: dict[str, Any], link: Any = None) -> dict[str, Any]:
    return {
        "id": a.id, "kind": a.kind, "key": a.key, "fingerprint": a.fingerprint,
        "status": "open" if a.status == "firing" else a.status,
        "first_seen": _iso(a.first_seen), "opened_at": _iso(a.opened_at), "updated_at": _iso(a.updated_at),
        "resolved_at": _iso(a.resolved_at), "window_start": _iso(a.window_start), "count": a.count,
        "max_count": a.max_count, "expected": a.expected, "score": a.score, "tickers": a.tickers,
        "sample_post_ids": a.sample_post_ids,
        "sample_posts": [{"key": k, "text": samples[k].text, "created_at": _iso(samples[k].created_at),
                          "url": link(samples[k]) if link else samples[k].url}
                         for k in a.sample_post_ids if k in samples],
        "events": events,
    }
