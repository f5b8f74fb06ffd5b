"""`alerts list`, `alerts show`, `alerts silence`, `alerts unsilence`: see alerts and the events of one, and
mute their notifications for a while. Times are shown in ``[alerts] display_utc_offset_hours`` (JST) with
the offset, as in the messages."""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import UTC, datetime
from typing import Any, cast

from monitor.commands import add_command, settings_and_engine
from monitor.durations import parse_duration
from storage.export import json_line

LIST_EXAMPLE = "incident-monitor alerts list --status all"
SHOW_EXAMPLE = "incident-monitor alerts show broker:楽天証券"
SILENCE_EXAMPLE = ('incident-monitor alerts silence --kind broker --key 楽天証券 --for 2h '
                   '--comment "known incident, PR statement out"')
UNSILENCE_EXAMPLE = "incident-monitor alerts unsilence 3"


def _time(value: datetime | None, offset: float = 9.0) -> str:
    from monitor.alerts.render import format_time

    return format_time(value, offset) if value else "-"


def _offset(args: argparse.Namespace) -> tuple[float, Any]:
    settings, engine = settings_and_engine(args, read_only=True)
    return settings.alerts.display_utc_offset_hours, engine


def cmd_list(args: argparse.Namespace, *, out: Any = None, now: datetime | None = None) -> int:
    from sqlmodel import Session

    from monitor.alerts.silences import list_alerts, list_silences

    out = out or sys.stdout
    now = now or datetime.now(UTC)
    offset, engine = _offset(args)
    with Session(engine) as session:
        alerts = list_alerts(session, args.status, args.limit)
        silences = list_silences(session, now)
    if args.format == "json":
        for alert in alerts:
            out.write(json_line({
                "id": alert.id, "kind": alert.kind, "key": alert.key, "status": alert.status,
                "first_seen": alert.first_seen.isoformat(), "opened_at": alert.opened_at and alert.opened_at.isoformat(),
                "resolved_at": alert.resolved_at and alert.resolved_at.isoformat(), "count": alert.count,
                "max_count": alert.max_count, "expected": alert.expected, "tickers": alert.tickers,
            }) + "\n")
        return 0
    if alerts:
        width = len(_time(now, offset))
        out.write(f"{'id':>5}  {'status':<8}  {'kind':<7}  {'key':<20}  {'reporters now/peak':>18}  "
                  f"{'opened':<{width}}  resolved\n")
        for a in alerts:
            out.write(f"{a.id:>5}  {a.status:<8}  {a.kind:<7}  {a.key[:20]:<20}  {a.count:>13}/{a.max_count:<4}  "
                      f"{_time(a.opened_at, offset):<{width}}  {_time(a.resolved_at, offset)}\n")
    else:
        out.write(f"no {args.status if args.status != 'all' else ''} alerts\n".replace("  ", " "))
    if silences:
        out.write("\nactive silences:\n")
        for s in silences:
            comment = f"  # {s.comment}" if s.comment else ""
            out.write(f"{s.id:>5}  {s.kind or 'any':<7}  {s.key[:20]:<20}  until {_time(s.expires_at, offset)}"
                      f"{comment}\n")
    return 0


def cmd_show(args: argparse.Namespace, *, out: Any = None) -> int:
    from sqlmodel import Session

    from monitor.alerts.silences import alert_events, find_alert

    out = out or sys.stdout
    offset, engine = _offset(args)
    with Session(engine) as session:
        alert = find_alert(session, args.alert)
        events = alert_events(session, cast(int, alert.id))
    if args.format == "json":
        for row in events:
            out.write(json_line({k: v for k, v in row.payload.items() if k != "extra"}) + "\n")
        return 0
    out.write(f"alert {alert.id}: {alert.kind}:{alert.key} ({alert.status}), first seen "
              f"{_time(alert.first_seen, offset)}, opened {_time(alert.opened_at, offset)}, resolved "
              f"{_time(alert.resolved_at, offset)}; peak {alert.max_count} reporters\n")
    if not events:
        out.write("no events yet (pending: it has not paged)\n")
        return 0
    width = len(_time(alert.first_seen, offset))
    out.write(f"{'time':<{width}}  {'event':<7}  {'reporters':>9}  {'expected':>8}  {'score':>5}  note\n")
    for row in events:
        p = row.payload
        extra = p.get("extra") or {}
        note = {"repeat": "reminder", "growth": "grew", "quiet": "quiet"}.get(str(extra.get("reason")), "")
        if extra.get("silenced"):
            note += " (silenced)"
        if extra.get("inhibited_by"):
            note += f" (folded into {', '.join(extra['inhibited_by'])})"
        out.write(f"{_time(row.at, offset):<{width}}  {row.event:<7}  {p.get('count', 0):>9}  "
                  f"{float(p.get('expected', 0)):>8.2g}  {float(p.get('score', 0)):>5.1f}  {note.strip()}\n")
    return 0


def cmd_silence(args: argparse.Namespace, *, out: Any = None, now: datetime | None = None) -> int:
    from monitor.alerts.silences import create_silence
    from storage.database import session_scope

    out = out or sys.stdout
    now = now or datetime.now(UTC)
    duration = parse_duration(args.duration)
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no user name in minimal containers
        user = ""
    with session_scope(settings_and_engine(args)[1]) as session:
        silence = create_silence(session, kind=args.kind, key=args.key, duration=duration, now=now,
                                 comment=args.comment, created_by=user)
        out.write(f"silence {silence.id}: {silence.kind or 'any kind'} {silence.key} muted until "
                  f"{_time(silence.expires_at)}\n")
    return 0


def cmd_unsilence(args: argparse.Namespace, *, out: Any = None, now: datetime | None = None) -> int:
    from monitor.alerts.silences import expire_silence
    from storage.database import session_scope

    out = out or sys.stdout
    now = now or datetime.now(UTC)
    with session_scope(settings_and_engine(args)[1]) as session:
        silence = expire_silence(session, args.id, now)
        out.write(f"silence {silence.id} ({silence.kind or 'any kind'} {silence.key}) ended\n")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    alerts = subparsers.add_parser(
        "alerts", help=f"see alerts and silence their notifications. Example: {LIST_EXAMPLE}",
        description=f"See alerts and silence their notifications.\n\nExample: {LIST_EXAMPLE}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = alerts.add_subparsers(dest="alerts_command", metavar="COMMAND", required=True)

    p = add_command(sub, "list", "list alerts, newest opened first, and the active silences", LIST_EXAMPLE, cmd_list)
    p.add_argument("--status", choices=("open", "pending", "resolved", "all"), default="open",
                   help="which alerts (default: open, i.e. firing)")
    p.add_argument("--limit", type=int, default=50, help="at most this many alerts (default 50)")
    p.add_argument("--format", choices=("table", "json"), default="table", help="table (default) or JSON lines")

    p = add_command(sub, "show", "print the events of one alert (open, updates, resolve) in time order",
                    SHOW_EXAMPLE, cmd_show)
    p.add_argument("alert", metavar="KEY", help="kind:key (broker:楽天証券, ticker:2269.HK, overall), a bare key, "
                   "or an id from `alerts list`; the newest opened alert when several match")
    p.add_argument("--format", choices=("table", "json"), default="table",
                   help="table (default) or the events as contract JSON lines")

    p = add_command(sub, "silence", "mute notifications for matching alerts for a while; the alerts still track, and "
             "events planned while muted are recorded but never sent", SILENCE_EXAMPLE, cmd_silence)
    p.add_argument("--kind", choices=("broker", "ticker", "overall", "source"), default=None,
                   help="alert kind to match (default: every kind); source = the bot's own alert of a silent source")
    p.add_argument("--key", required=True, help="broker name, ticker code or source (x, reddit, bluesky) to match, "
                   "or * for all")
    p.add_argument("--for", dest="duration", required=True, metavar="DURATION",
                   help="how long, e.g. 30m, 2h, 1d (at most 90 days)")
    p.add_argument("--comment", default="", help="why, for the team (shown by `alerts list`)")

    p = add_command(sub, "unsilence", "end a silence now", UNSILENCE_EXAMPLE, cmd_unsilence)
    p.add_argument("id", type=int, help="silence id, as shown by `alerts list`")
