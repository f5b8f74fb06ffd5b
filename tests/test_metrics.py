"""`/metrics` over real HTTP, parsed with prometheus-client's own parser: the values are the numbers
`status` prints (one function computes both), on SQLite and PostgreSQL; `run` serves them on
``[metrics] port`` and `serve` at ``GET /metrics``."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from io import StringIO

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor.alerts import AlertsConfig, process_signals
from monitor.collectors import health
from monitor.collectors.base import CollectResult
from monitor.events import Signal
from monitor.ingest import store_records
from monitor.metrics import MetricsConfig, serve_metrics
from monitor.records import PostRecord
from monitor.settings import load_settings
from storage.database import open_store, session_scope


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, by (name, sorted labels)."""
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def _fill(engine, now: datetime) -> None:
    """Posts of two sources, X and Reddit health, spend, one live alert opened and one dead message."""
    import sqlalchemy as sa

    from storage.models import OutboxItem

    with session_scope(engine) as session:
        store_records(session, [PostRecord(source="x", id=str(i), created_at=now - timedelta(minutes=20),
                                           author_id=str(i), text="楽天証券で不正ログイン") for i in range(3)])
        store_records(session, [PostRecord(source="reddit", id="t3_a", created_at=now - timedelta(minutes=5),
                                           author_id="r", text="SBI証券 乗っ取り")])
        signal = Signal("broker", "楽天証券", now, timedelta(minutes=30), now - timedelta(minutes=30), count=5,
                        expected=0.2, score=9.0, firing=True)
        process_signals(session, [signal], now, AlertsConfig(group_wait_minutes=0), ["slack"])
    with session_scope(engine) as session:
        session.execute(sa.update(OutboxItem).values(status="dead", last_error="gave up"))
    health.record_pass(engine, CollectResult("x", new=3, requests=4), now=now - timedelta(minutes=3))
    health.add_spend(engine, "x", 0.015, now=now)
    health.record_error(engine, "reddit", "503 Service Unavailable", now=now - timedelta(minutes=1))


def test_run_metrics_port_matches_status(db_url, tmp_path):
    from monitor.commands.collect import print_status

    engine = open_store(db_url)
    now = datetime.now(UTC)
    _fill(engine, now)
    config = tmp_path / "c.toml"
    config.write_text("[x]\ndaily_budget_usd = 2.5\n", encoding="utf-8")
    settings = load_settings(config, env={})
    status = StringIO()
    print_status(engine, settings, now, status)
    port = free_port()
    server = serve_metrics(engine, settings, MetricsConfig(port=port))
    try:
        m = scrape(f"http://127.0.0.1:{port}/metrics")
    finally:
        server.shutdown()
        server.server_close()
    text = status.getvalue()
    # the same numbers, from the same snapshot
    assert "posts stored: 4 (reddit 1, x 3)" in text
    assert m[("incident_monitor_posts_stored", (("source", "x"),))] == 3
    assert m[("incident_monitor_posts_stored", (("source", "reddit"),))] == 1
    assert "waiting for analysis: 4" in text and m[("incident_monitor_analysis_backlog_posts", ())] == 4
    assert m[("incident_monitor_analysis_lag_seconds", ())] >= 20 * 60
    assert "alerts opened (live): 1; messages retrying: 0, given up: 1" in text
    assert m[("incident_monitor_alerts_opened_total", (("kind", "broker"),))] == 1
    assert m[("incident_monitor_alerts_opened_total", (("kind", "source"),))] == 0
    assert m[("incident_monitor_alerts_open", (("kind", "broker"), ("status", "firing")))] == 1
    assert m[("incident_monitor_messages_undelivered", (("state", "dead"),))] == 1
    assert m[("incident_monitor_messages_undelivered", (("state", "retrying"),))] == 0
    assert "spend today ~$0.01 of $2.50 budget" in text or "spend today ~$0.02 of $2.50 budget" in text
    assert m[("incident_monitor_x_spend_today_usd", ())] == pytest.approx(0.015)
    assert m[("incident_monitor_x_daily_budget_usd", ())] == 2.5
    last_x = m[("incident_monitor_source_last_success_timestamp_seconds", (("source", "x"),))]
    assert last_x == pytest.approx((now - timedelta(minutes=3)).timestamp(), abs=1)
    assert m[("incident_monitor_source_failing", (("source", "x"),))] == 0
    assert m[("incident_monitor_source_failing", (("source", "reddit"),))] == 1  # failed, never succeeded
    assert "last error" in text and "503 Service Unavailable" in text
    assert m[("incident_monitor_source_posts_collected_total", (("source", "x"),))] == 3
    assert m[("incident_monitor_store_up", ())] == 1
    assert m[("process_resident_memory_bytes", ())] > 0  # process metrics beside the store's
    engine.dispose()


def test_scrape_of_an_unreachable_store_says_so_instead_of_failing():
    from monitor.metrics import build_registry
    from storage.database import make_engine

    engine = make_engine("postgresql://nobody@127.0.0.1:1/none")
    from prometheus_client import generate_latest

    families = {f.name: f for f in text_string_to_metric_families(generate_latest(build_registry(engine)).decode())}
    assert families["incident_monitor_store_up"].samples[0].value == 0
    assert "incident_monitor_posts_stored" not in families


def test_port_in_use_is_one_line_naming_the_setting():
    from monitor.errors import ConfigError

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        with pytest.raises(ConfigError, match=r"\[metrics\] cannot listen on 127\.0\.0\.1:\d+ .*MONITOR_METRICS_PORT"):
            serve_metrics(None, None, MetricsConfig(port=sock.getsockname()[1]))
    assert serve_metrics(None, None, MetricsConfig()) is None  # off by default


@pytest.mark.parametrize("env, message", [
    ({"MONITOR_METRICS_PORT": "70000"}, "less than or equal to 65535"),
    ({"MONITOR_METRICS_PORT": "-1"}, "greater than or equal to 0"),
])
def test_metrics_port_has_a_range(env, message):
    from monitor.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        load_settings(env=env)
    assert load_settings(env={"MONITOR_METRICS_PORT": "9464", "MONITOR_METRICS_HOST": "0.0.0.0"}).metrics == \
        MetricsConfig(port=9464, host="0.0.0.0")


def test_serve_has_metrics_without_a_token(sqlite_url):
    pytest.importorskip("fastapi")
    from servers import serving

    from monitor.api.app import create_app
    from monitor.api.config import ApiConfig
    from storage.database import open_existing_store

    engine = open_store(sqlite_url)
    _fill(engine, datetime.now(UTC))
    engine.dispose()
    engine = open_existing_store(sqlite_url)
    app = create_app(engine, ApiConfig(tokens="t" * 20), raw_authors=True)
    try:
        with serving(app) as base:
            m = scrape(f"{base}/metrics")
    finally:
        engine.dispose()
    assert m[("incident_monitor_posts_stored", (("source", "x"),))] == 3
    assert m[("incident_monitor_alerts_opened_total", (("kind", "broker"),))] == 1
    assert m[("incident_monitor_x_daily_budget_usd", ())] == 5.0  # the default without settings
    assert m[("incident_monitor_rejected_records", ())] == 0
