"""Alert events -> Slack Block Kit messages and plain text. Pure: no I/O, no clock.

Everything a message shows travels in the event (``AlertEvent.extra``, filled at planning time with the
sample posts' text and links), so delivery never reads posts. Slack's limits are enforced here, after the
message is built, so no input - a 100,000-character post, a thousand tickers - can make Slack refuse it:
at most 50 blocks, header text 150 characters, section text 3,000, a field 2,000 and 10 fields, context
elements 10, and a total of text kept under Slack's undocumented per-message budget
(``msg_blocks_too_long`` at roughly 12,000 characters). Cut text ends with an ellipsis.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote, urlencode

from monitor.events import AlertEvent

MAX_BLOCKS = 50
HEADER_CHARS = 150
SECTION_CHARS = 3000
FIELD_CHARS = 2000
MAX_FIELDS = 10
MAX_CONTEXT_ELEMENTS = 10
TOTAL_TEXT_CHARS = 11000  # below the ~12,000 where Slack answers msg_blocks_too_long
FALLBACK_CHARS = 3000
ELLIPSIS = "…"

KIND_LABEL = {"broker": "証券会社 broker", "ticker": "銘柄 ticker", "overall": "全体 overall"}
EVENT_LABEL = {
    "open": ":rotating_light: 発生 OPEN",
    "update": ":arrow_up: 更新 UPDATE",
    "resolve": ":white_check_mark: 収束 RESOLVED",
}
PARENT_LABEL = {
    "open": ":rotating_light: 発生中 FIRING",
    "update": ":rotating_light: 発生中 FIRING",
    "resolve": ":white_check_mark: 収束 RESOLVED",
}
HEADLINE = {
    "broker": "被害報告が急増 surge of account-takeover reports",
    "ticker": "不正買付の標的の疑い suspected target of unauthorized buying",
    "overall": "被害報告が全体で急増 surge of account-takeover reports",
}


def truncate(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters (code points, as Slack counts), ending in an ellipsis.

    >>> truncate("楽天証券で勝手に中国株を買われた", 8)
    '楽天証券で勝手…'
    >>> truncate("ok", 8)
    'ok'
    """
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 1)] + ELLIPSIS


def escape_mrkdwn(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as control characters.

    >>> escape_mrkdwn("<b> & <!here>")
    '&lt;b&gt; &amp; &lt;!here&gt;'
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def safe_url(url: str | None) -> str | None:
    """An http(s) URL that cannot break out of a ``<url|label>`` link, or None.

    >>> safe_url("https://x.com/a/status/1?x=a|b")
    'https://x.com/a/status/1?x=a%7Cb'
    >>> safe_url("javascript:alert(1)") is None
    True
    """
    if not url or not url.startswith(("https://", "http://")) or len(url) > 2000:
        return None
    return url.replace("|", "%7C").replace("<", "%3C").replace(">", "%3E").replace(" ", "%20")


def format_time(value: datetime | str | None, utc_offset_hours: float = 9.0) -> str:
    """A time shown in the team's zone.

    >>> from datetime import UTC
    >>> format_time(datetime(2025, 3, 19, 6, 2, tzinfo=UTC))
    '2025-03-19 15:02 JST'
    >>> format_time("2025-03-19T06:02:00+00:00", 0)
    '2025-03-19 06:02 UTC'
    """
    if value is None:
        return "?"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value[:40]
    zone = timezone(timedelta(hours=utc_offset_hours))
    if utc_offset_hours == 9:
        label = "JST"
    elif utc_offset_hours == 0:
        label = "UTC"
    else:
        label = value.astimezone(zone).strftime("UTC%z")
    return f"{value.astimezone(zone):%Y-%m-%d %H:%M} {label}"


def dashboard_link(base_url: str, kind: str, key: str, since: datetime) -> str | None:
    """The dashboard query showing this alert's posts.

    >>> from datetime import UTC
    >>> dashboard_link("https://mon.example/", "broker", "楽天証券", datetime(2025, 3, 19, 5, 50, tzinfo=UTC))
    'https://mon.example/?broker=%E6%A5%BD%E5%A4%A9%E8%A8%BC%E5%88%B8&since=2025-03-19T05%3A50%3A00%2B00%3A00'
    """
    if not base_url:
        return None
    params = {"since": since.isoformat()}
    if kind in ("broker", "ticker"):
        params = {kind: key, **params}
    return f"{base_url.rstrip('/')}/?{urlencode(params, quote_via=quote)}"


def _since(event: AlertEvent) -> datetime:
    first_seen = event.extra.get("first_seen")
    try:
        first = datetime.fromisoformat(first_seen) if first_seen else event.window_start
    except ValueError:
        first = event.window_start
    return min(first, event.window_start)


def _window_text(event: AlertEvent, utc_offset_hours: float) -> str:
    minutes = event.extra.get("window_minutes") or (event.at - event.window_start).total_seconds() / 60
    span = f"{minutes / 60:g} h" if minutes >= 60 else f"{minutes:g} min"
    return f"{span} ({format_time(event.window_start, utc_offset_hours)} 〜)"


def _samples(event: AlertEvent) -> list[dict[str, Any]]:
    posts = event.extra.get("posts")
    if isinstance(posts, list) and posts:
        return [p for p in posts if isinstance(p, dict)]
    return [{"key": key} for key in event.sample_post_ids]


def summary_line(event: AlertEvent) -> str:
    """One line for notification previews and the terminal.

    >>> from datetime import UTC
    >>> t = datetime(2025, 3, 19, 6, 20, tzinfo=UTC)
    >>> summary_line(AlertEvent("open", "broker", "楽天証券", t, t, 7, 0.4, 12.3))
    '[OPEN] 楽天証券: 7 reporters (expected 0.4) - 被害報告が急増 surge of account-takeover reports'
    """
    expected = f"{event.expected:.2g}" if event.expected < 10 else f"{event.expected:.0f}"
    return (
        f"[{event.event.upper()}] {event.key}: {event.count} reporters (expected {expected}) - "
        f"{HEADLINE.get(event.kind, '')}"
    )


def render_blocks(
    event: AlertEvent,
    *,
    dashboard_url: str = "",
    utc_offset_hours: float = 9.0,
    mention: str = "",
    parent: bool = False,
    max_samples: int = 5,
) -> tuple[list[dict[str, Any]], str]:
    """The Block Kit blocks and the fallback text of one event.

    ``parent=True`` renders the thread's parent message as it should read now (edited in place with
    ``chat.update``); otherwise the message for this event (the first post, or a thread reply).
    """
    label = (PARENT_LABEL if parent else EVENT_LABEL)[event.event]
    header = f"{label} {event.key} — {HEADLINE.get(event.kind, '')}"
    blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": header, "emoji": True}}]
    if mention and event.event == "open" and not parent:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": mention}})
    expected = f"{event.expected:.2f}".rstrip("0").rstrip(".")
    fields = [
        f"*{KIND_LABEL.get(event.kind, event.kind)}*\n{escape_mrkdwn(event.key)}",
        f"*報告者 distinct reporters*\n{event.count} (平常 expected {expected})",
        f"*期間 window*\n{_window_text(event, utc_offset_hours)}",
        f"*初報 first seen*\n{format_time(event.extra.get('first_seen') or event.window_start, utc_offset_hours)}",
        f"*スコア score*\n{event.score:.1f}",
    ]
    if event.event == "update" and event.extra.get("previous_count") is not None:
        fields.append(f"*前回 previous*\n{event.extra['previous_count']} → {event.count}")
    if event.event == "resolve":
        fields.append(f"*収束 resolved at*\n{format_time(event.at, utc_offset_hours)}")
    if event.tickers:
        fields.append("*銘柄 top tickers*\n" + escape_mrkdwn(", ".join(event.tickers)))
    brokers = [b for b in event.extra.get("brokers") or () if isinstance(b, str)]
    if brokers and event.kind != "broker":
        fields.append("*証券会社 brokers*\n" + escape_mrkdwn(", ".join(brokers)))
    if event.extra.get("discussion_count"):
        fields.append(f"*関連投稿 discussion posts*\n{event.extra['discussion_count']}")
    blocks.append({"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]})
    samples = _samples(event)[:max_samples]
    if samples and not (parent and event.event == "resolve"):
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "*投稿例 sample posts*"}})
        for post in samples:
            text = escape_mrkdwn(" ".join(str(post.get("text") or "").split())) or f"({escape_mrkdwn(str(post.get('key', '')))})"
            url = safe_url(post.get("url"))
            link = f"\n<{url}|投稿を開く open post>" if url else ""
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"> {text}{link}"}})
    context = []
    link = dashboard_link(dashboard_url, event.kind, event.key, _since(event))
    if link:
        context.append({"type": "mrkdwn", "text": f"<{safe_url(link)}|ダッシュボード dashboard>"})
    explanation = event.extra.get("explanation")
    if explanation:
        context.append({"type": "mrkdwn", "text": escape_mrkdwn(str(explanation))})
    context.append({"type": "mrkdwn", "text": f"{event.kind}:{escape_mrkdwn(event.key)} · {format_time(event.at, utc_offset_hours)}"})
    blocks.append({"type": "context", "elements": context})
    fallback = truncate(summary_line(event), FALLBACK_CHARS)
    if mention and event.event == "open" and not parent:
        fallback = truncate(f"{mention} {fallback}", FALLBACK_CHARS)
    return enforce_limits(blocks), fallback


def _texts(blocks: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every text object of the blocks (mutable), for the total budget."""
    found = []
    for block in blocks:
        if isinstance(block.get("text"), dict):
            found.append(block["text"])
        found.extend(block.get("fields") or ())
        found.extend(e for e in block.get("elements") or () if isinstance(e, dict) and "text" in e)
    return found


def enforce_limits(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Cut blocks, fields and texts to Slack's limits; the result always passes Slack's validation.

    >>> blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 5000}}] * 80
    >>> out = enforce_limits(blocks)
    >>> len(out), max(len(b["text"]["text"]) for b in out if "text" in b), sum(len(t["text"]) for t in _texts(out)) <= TOTAL_TEXT_CHARS
    (50, 3000, True)
    """
    out: list[dict[str, Any]] = []
    for block in blocks:
        block = {k: (dict(v) if isinstance(v, dict) else v) for k, v in block.items()}
        kind = block.get("type")
        if kind == "header":
            block["text"]["text"] = truncate(block["text"]["text"], HEADER_CHARS)
        elif kind == "section":
            if "text" in block:
                block["text"]["text"] = truncate(block["text"]["text"], SECTION_CHARS) or ELLIPSIS
            if "fields" in block:
                block["fields"] = [
                    {**f, "text": truncate(f["text"], FIELD_CHARS) or ELLIPSIS} for f in block["fields"][:MAX_FIELDS]
                ]
        elif kind == "context":
            block["elements"] = [
                {**e, "text": truncate(e["text"], SECTION_CHARS)} for e in block["elements"][:MAX_CONTEXT_ELEMENTS]
            ]
        out.append(block)
    if len(out) > MAX_BLOCKS:
        omitted = len(out) - (MAX_BLOCKS - 1)
        # Keep the trailing context block (the dashboard link) when there is one.
        tail = [out[-1]] if out[-1].get("type") == "context" else []
        out = out[: MAX_BLOCKS - 1 - len(tail)] + [
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"… {omitted} more blocks omitted"}]}
        ] + tail
    texts = _texts(out)
    excess = sum(len(t["text"]) for t in texts) - TOTAL_TEXT_CHARS
    while excess > 0:
        longest = max(texts, key=lambda t: len(t["text"]))
        size = len(longest["text"])
        cut = max(40, size - excess) if size > 40 else max(1, size // 2)
        longest["text"] = truncate(longest["text"], cut)
        excess -= size - len(longest["text"])
        if size == len(longest["text"]):  # nothing left to cut
            break
    return out


def render_text(event: AlertEvent, *, utc_offset_hours: float = 9.0, max_samples: int = 5) -> str:
    """A readable multi-line summary for the terminal (Japanese and English labels).

    >>> from datetime import UTC
    >>> t = datetime(2025, 3, 19, 6, 20, tzinfo=UTC)
    >>> ev = AlertEvent("open", "broker", "楽天証券", t, t - timedelta(minutes=30), 7, 0.4, 12.3, ("2269.HK",),
    ...                 extra={"posts": [{"key": "x:1", "text": "勝手に売られた", "url": "https://x.com/a/status/1"}]})
    >>> print(render_text(ev))
    [OPEN] 楽天証券: 7 reporters (expected 0.4) - 被害報告が急増 surge of account-takeover reports
      期間 window 30 min (2025-03-19 14:50 JST 〜) · 初報 first seen 2025-03-19 14:50 JST · score 12.3
      銘柄 tickers: 2269.HK
      - 勝手に売られた https://x.com/a/status/1
    """
    lines = [summary_line(event)]
    first = format_time(event.extra.get("first_seen") or event.window_start, utc_offset_hours)
    lines.append(
        f"  期間 window {_window_text(event, utc_offset_hours)} · 初報 first seen {first} · score {event.score:.1f}"
    )
    if event.tickers:
        lines.append("  銘柄 tickers: " + ", ".join(event.tickers[:10]))
    brokers = event.extra.get("brokers") or ()
    if brokers and event.kind != "broker":
        lines.append("  証券会社 brokers: " + ", ".join(map(str, brokers[:10])))
    for post in _samples(event)[:max_samples]:
        text = truncate(" ".join(str(post.get("text") or post.get("key", "")).split()), 120)
        url = post.get("url") or ""
        lines.append(f"  - {text} {url}".rstrip())
    return "\n".join(lines)
