"""Prometheus metrics: the numbers of `status`, read from the store at each scrape.

One custom collector (prometheus-client's ``Collector`` protocol) calls :func:`monitor.operations.snapshot`
- the function `status` prints - so a scrape and `status` can never disagree, and every process that reads
the store (the bot, `serve`) exports the same values. Process metrics (CPU, memory, open files, GC) come from
prometheus-client's own collectors. `run` serves them on ``[metrics] port`` (off by default) and `serve`
at ``GET /metrics``.

A scrape that cannot read the store still answers: ``incident_monitor_store_up`` is 0 and the store's
metrics are absent, so an alert rule can page on the store rather than on a failed scrape.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from monitor.metrics_config import MetricsConfig, MetricsPort
from storage.errors import StorageError

log = logging.getLogger(__name__)
PREFIX = "incident_monitor"
__all__ = ["MetricsConfig", "MetricsPort", "build_registry", "serve_metrics"]


def _ts(moment: datetime | None) -> float | None:
    return moment.timestamp() if moment is not None else None


class StoreCollector(Collector):
    """Reads :func:`monitor.operations.snapshot` at every scrape and yields it as metric families."""

    def __init__(self, engine: Engine, settings: Any = None) -> None:
        self.engine = engine
        self.settings = settings

    def describe(self) -> list[Metric]:
        return []  # no store read at registration time

    def collect(self) -> Iterator[Metric]:
        from monitor.operations import ALERT_KINDS, snapshot

        up = GaugeMetricFamily(f"{PREFIX}_store_up", "1 when the store answered this scrape, else 0")
        try:
            snap = snapshot(self.engine, self.settings, datetime.now(UTC))
        except (SQLAlchemyError, StorageError, OSError) as exc:
            log.warning("metrics: cannot read the store: %s", str(exc).splitlines()[0] if str(exc) else exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up

        posts = GaugeMetricFamily(f"{PREFIX}_posts_stored", "posts in the store, by source", labels=["source"])
        for source, n in snap.posts_by_source.items():
            posts.add_metric([source], n)
        yield posts

        success = GaugeMetricFamily(f"{PREFIX}_source_last_success_timestamp_seconds",
                                    "Unix time of the source's last successful collection pass", labels=["source"])
        error = GaugeMetricFamily(f"{PREFIX}_source_last_error_timestamp_seconds",
                                  "Unix time of the source's last failed collection pass", labels=["source"])
        failing = GaugeMetricFamily(f"{PREFIX}_source_failing",
                                    "1 when the source's last pass failed (or it is disabled), else 0", labels=["source"])
        disabled = GaugeMetricFamily(f"{PREFIX}_source_disabled",
                                     "1 when the source stopped for missing or rejected credentials", labels=["source"])
        collected = CounterMetricFamily(f"{PREFIX}_source_posts_collected",
                                        "new posts stored by the source's collection passes", labels=["source"])
        requests = CounterMetricFamily(f"{PREFIX}_source_requests", "API requests made by the source's passes",
                                       labels=["source"])
        spend = GaugeMetricFamily(f"{PREFIX}_source_spend_today_usd", "estimated API spend of the UTC day",
                                  labels=["source"])
        for source, view in sorted(snap.sources.items()):
            if (t := _ts(view.last_success_at)) is not None:
                success.add_metric([source], t)
            if (t := _ts(view.last_error_at)) is not None:
                error.add_metric([source], t)
            broken = view.disabled_reason is not None or (
                view.last_error_at is not None
                and (view.last_success_at is None or view.last_error_at > view.last_success_at))
            failing.add_metric([source], int(broken))
            disabled.add_metric([source], int(view.disabled_reason is not None))
            collected.add_metric([source], view.posts_collected)
            requests.add_metric([source], view.requests)
            spend.add_metric([source], view.spend_today_usd)
        yield from (success, error, failing, disabled, collected, requests, spend)
        yield GaugeMetricFamily(f"{PREFIX}_x_spend_today_usd", "estimated X spend of the UTC day",
                                value=snap.x_spend_today_usd)
        yield GaugeMetricFamily(f"{PREFIX}_x_daily_budget_usd", "[x] daily_budget_usd: searching pauses beyond it",
                                value=snap.x_budget_usd)

        yield GaugeMetricFamily(f"{PREFIX}_rejected_records", "bad records quarantined by the ingest paths",
                                value=snap.rejected)
        yield GaugeMetricFamily(f"{PREFIX}_analysis_backlog_posts", "posts waiting for classification",
                                value=snap.analysis_backlog)
        lag = snap.analysis_lag
        yield GaugeMetricFamily(f"{PREFIX}_analysis_lag_seconds",
                                "age of the oldest post waiting for classification (0 when none waits)",
                                value=lag.total_seconds() if lag is not None else 0.0)
        if snap.last_cycle_at is not None:
            yield GaugeMetricFamily(f"{PREFIX}_last_cycle_timestamp_seconds",
                                    "Unix time the live analyze/detect cycle last stored its state",
                                    value=snap.last_cycle_at.timestamp())

        opened = CounterMetricFamily(f"{PREFIX}_alerts_opened", "live alerts opened, by kind", labels=["kind"])
        active = GaugeMetricFamily(f"{PREFIX}_alerts_open", "live alerts pending or firing now, by kind and status",
                                   labels=["kind", "status"])
        for kind in ALERT_KINDS:
            opened.add_metric([kind], snap.alerts_opened.get(kind, 0))
            for status in ("pending", "firing"):
                active.add_metric([kind, status], sum(1 for a in snap.open_alerts if a.kind == kind and a.status == status))
        yield opened
        yield active
        delivery = GaugeMetricFamily(f"{PREFIX}_messages_undelivered",
                                     "notifications owed: retrying (last attempt failed) or dead (given up)",
                                     labels=["state"])
        delivery.add_metric(["retrying"], snap.messages_retrying)
        delivery.add_metric(["dead"], snap.messages_dead)
        yield delivery


def build_registry(engine: Engine, settings: Any = None) -> CollectorRegistry:
    """A registry of its own (not the global one): the store collector plus process, platform and GC."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(StoreCollector(engine, settings))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def serve_metrics(engine: Engine, settings: Any, config: MetricsConfig) -> Any:
    """Serve ``/metrics`` on ``config.host:config.port`` from a daemon thread; returns the server (its
    ``shutdown()`` stops it), or None when the port is 0. A port in use is one line naming the setting."""
    from prometheus_client import start_http_server

    from monitor.errors import ConfigError

    if not config.port:
        return None
    try:
        server, _thread = start_http_server(config.port, addr=config.host, registry=build_registry(engine, settings))
    except OSError as exc:
        raise ConfigError(f"[metrics] cannot listen on {config.host}:{config.port} ({exc.strerror}): choose another "
                          "port with [metrics] port / MONITOR_METRICS_PORT, or 0 to turn metrics off") from exc
    log.info("serving Prometheus metrics on http://%s:%d/metrics", config.host, config.port)
    return server
