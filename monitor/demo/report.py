"""The readable summary printed at the end of ``incident-monitor demo``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TextIO

from sqlmodel import Session

from monitor.alerts.render import format_time, reporters
from monitor.events import AlertEvent
from storage.database import redact
from storage.queries import label_counts


def _fmt_time(event: AlertEvent, offset: float) -> str:
    return format_time(event.at, offset)


def print_demo_summary(pipeline: Any, imported: Any, events: list[AlertEvent], *, db: str,
                       events_path: Path, stream: TextIO) -> None:
    with Session(pipeline.engine) as session:
        labels = label_counts(session)
    w = stream.write
    w("\n== Demo summary ==\n")
    w(f"Posts stored: {imported.stored} new ({imported.duplicates} already stored), "
      f"{len(imported.errors)} bad lines\n")
    w("Classified:   " + ", ".join(f"{labels.get(k, 0)} {k}" for k in
                                   ("victim_report", "incident_discussion", "irrelevant")) + "\n")
    w(f"Model:        {pipeline.analyzer.model_version}\n")
    opens = [e for e in events if e.event == "open"]
    w(f"\nAlerts: {len(opens)} opened, {sum(e.event == 'update' for e in events)} updates, "
      f"{sum(e.event == 'resolve' for e in events)} resolved\n")
    offset = pipeline.settings.alerts.display_utc_offset_hours
    for e in events:
        tickers = f"  tickers {', '.join(e.tickers)}" if e.tickers else ""
        muted = e.to_json().get("muted_by")
        note = f"  (folded into {muted}, not paged)" if muted else ""
        if e.event == "resolve":
            peak = max(int(e.extra.get("max_count") or 0), e.count)
            what = f"resolved; peak {reporters(peak)}"
        else:
            what = f"{reporters(e.count)} (expected {e.expected:.2f}, score {e.score:.1f})"
        w(f"  {_fmt_time(e, offset)}  {e.event:<8} {e.kind}:{e.key:<14} {what}{tickers}{note}\n")
    w("\nWhere the data went:\n")
    w(f"  store        {redact(db)}\n")
    w(f"  alert events {events_path}\n")
    slack = "sent to Slack" if os.environ.get("SLACK_WEBHOOK_URL") or os.environ.get("SLACK_BOT_TOKEN") else \
        "not sent to Slack (set SLACK_WEBHOOK_URL to try it)"
    w(f"  notifications printed above; {slack}\n")
    w("\nExplore it (the demo's authors are made up, so its export may keep their ids as they are):\n")
    w(f"  incident-monitor export --db {db} --label victim_report --format csv --raw-authors\n")
    w(f"  incident-monitor alerts list --db {db}\n")
