"""Alert events -> Slack Block Kit messages and plain text. Pure: no I/O, no clock.

Everything a message shows travels in the event (``AlertEvent.extra``, filled at planning time with the
sample posts' text and links), so delivery never reads posts. Slack's limits are enforced here, after the
message is built, so no input - a 100,000-character post, a thousand tickers - can make Slack refuse it:
at most 50 blocks, header text 150 characters, section text 3,000, a field 2,000 and 10 fields, context
elements 10, and a total of text kept under Slack's undocumented per-message budget
(``msg_blocks_too_long`` at roughly 12,000 characters). Cut text ends with an ellipsis.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
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

KIND_LABEL = {"broker": "証券会社 broker", "ticker": "銘柄 ticker", "overall": "全体 overall",
              "source": "収集元 source"}
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
RESOLVED_HEADLINE = "収束 resolved"
REMINDER = "再通知 reminder: still firing"
SCORE_HELP = (
    "score = -log10 of the chance of this many reporters at the usual rate "
    "(5 = 1 in 100,000); an alert opens at the [detect] threshold"
)
HEADLINE = {
    "broker": "被害報告が急増 surge of account-takeover reports",
    "ticker": "不正買付の標的の疑い suspected target of unauthorized buying",
    "overall": "被害報告が全体で急増 surge of account-takeover reports",
    "source": "収集停止 source silent",
}
SOURCE_RECOVERED = "収集再開 collecting again"


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


_FORMATTING = str.maketrans({"*": "＊", "_": "＿", "~": "～", "`": "｀"})


def escape_post_text(text: str) -> str:
    """A post's text made inert in mrkdwn: ``& < >`` escaped, and the formatting marks ``* _ ~ ```
    (which Slack offers no escape for) replaced by their full-width forms, so a post cannot bold, strike,
    quote code or mention in our message. Control characters are dropped.

    >>> escape_post_text("*全部* 売られた_ ~`x` <!channel> & more")
    '＊全部＊ 売られた＿ ～｀x｀ &lt;!channel&gt; &amp; more'
    """
    return escape_mrkdwn(strip_control(text).translate(_FORMATTING))


_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def strip_control(text: str) -> str:
    r"""``text`` without ANSI escape sequences, control characters (newlines and tabs kept) or
    bidirectional overrides, so a post cannot recolour, move the cursor in or reorder a terminal.

    >>> strip_control("ok\x1b[2J\x1b[31mred\x1b[0m\x07 \u202etxt.exe\x00")
    'okred txt.exe'
    """
    return _CONTROL.sub("", _ANSI.sub("", text))


def canonical_url(post_key: str) -> str | None:
    """The public link of a post, built from its source and id only (never a record's own ``url`` field,
    which an input file controls).

    >>> canonical_url("x:1902345678901234567")
    'https://x.com/i/web/status/1902345678901234567'
    >>> canonical_url("bluesky:at://did:plc:abc123/app.bsky.feed.post/3kq2x")
    'https://bsky.app/profile/did:plc:abc123/post/3kq2x'
    >>> canonical_url("reddit:t3_1jes8k2")
    'https://www.reddit.com/comments/1jes8k2'
    >>> canonical_url("x:https://evil.example/"), canonical_url("bluesky:at://did:plc:a/other/1")
    (None, None)
    """
    source, _, pid = post_key.partition(":")
    if source == "x" and pid.isdigit() and len(pid) <= 25:
        return f"https://x.com/i/web/status/{pid}"
    if source == "bluesky":
        m = re.fullmatch(r"at://(did:[a-z0-9]+:[A-Za-z0-9._:%-]+)/app\.bsky\.feed\.post/([A-Za-z0-9._~:-]+)", pid)
        return f"https://bsky.app/profile/{m[1]}/post/{m[2]}" if m else None
    if source == "reddit":
        m = re.fullmatch(r"(?:t3_)?([a-z0-9]{1,12})", pid)
        return f"https://www.reddit.com/comments/{m[1]}" if m else None
    return None


def reporters(n: int) -> str:
    """>>> reporters(1), reporters(7)
    ('1 reporter', '7 reporters')
    """
    return f"{n} reporter{'' if n == 1 else 's'}"


def format_duration(delta: timedelta) -> str:
    """>>> format_duration(timedelta(minutes=135)), format_duration(timedelta(minutes=40))
    ('2 h 15 min', '40 min')
    """
    minutes = max(0, int(delta.total_seconds() // 60))
    hours, rest = divmod(minutes, 60)
    return f"{hours} h {rest} min" if hours and rest else f"{hours} h" if hours else f"{rest} min"


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
    """A time shown in the team's zone, with its offset: the one time style of messages, `alerts list`,
    `alerts show` and the demo summary.

    >>> from datetime import UTC
    >>> format_time(datetime(2025, 3, 19, 6, 2, tzinfo=UTC))
    '2025-03-19 15:02 JST (+09:00)'
    >>> format_time("2025-03-19T06:02:00+00:00", 0)
    '2025-03-19 06:02 UTC (+00:00)'
    """
    if value is None:
        return "?"
    if isinstance(value, str):
        text = value
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            return text[:40]
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)  # stored naive times are UTC (SQLite drops the offset)
    zone = timezone(timedelta(hours=utc_offset_hours))
    local = value.astimezone(zone)
    offset = local.strftime("%z")
    offset = f"{offset[:3]}:{offset[3:]}"
    label = {9.0: "JST", 0.0: "UTC"}.get(float(utc_offset_hours), "UTC" + offset)
    return f"{local:%Y-%m-%d %H:%M} {label} ({offset})"


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
    return f"{span} from {format_time(event.window_start, utc_offset_hours)}"


def _samples(event: AlertEvent) -> list[dict[str, Any]]:
    """The sample posts to show, newest first for an update (what is new since the alert opened)."""
    posts = event.extra.get("posts")
    if isinstance(posts, list) and posts:
        found = [p for p in posts if isinstance(p, dict)]
    else:
        found = [{"key": key} for key in event.sample_post_ids]
    if event.event == "update":
        found.sort(key=lambda p: str(p.get("created_at") or ""), reverse=True)
    return found


def _post_link(post: dict[str, Any]) -> str | None:
    return canonical_url(str(post.get("key") or ""))


def _duration(event: AlertEvent) -> str | None:
    opened = event.extra.get("opened_at") or event.extra.get("first_seen")
    try:
        return format_duration(event.at - datetime.fromisoformat(opened)) if opened else None
    except (TypeError, ValueError):
        return None


def _is_reminder(event: AlertEvent) -> bool:
    return event.event == "update" and event.extra.get("reason") == "repeat"


def _peak(event: AlertEvent) -> int:
    return max(int(event.extra.get("max_count") or 0), event.count)


def summary_line(event: AlertEvent) -> str:
    """One line for notification previews and the terminal.

    >>> from datetime import UTC
    >>> t = datetime(2025, 3, 19, 6, 20, tzinfo=UTC)
    >>> summary_line(AlertEvent("open", "broker", "楽天証券", t, t, 7, 0.4, 12.3))
    '[OPEN] 楽天証券: 7 reporters (expected 0.4) - 被害報告が急増 surge of account-takeover reports'
    >>> summary_line(AlertEvent("update", "broker", "楽天証券", t, t, 1, 0.4, 3.1, extra={"reason": "repeat"}))
    '[UPDATE] 楽天証券: 1 reporter (expected 0.4) - 再通知 reminder: still firing'
    >>> summary_line(AlertEvent("resolve", "broker", "楽天証券", t, t, 2, 0.4, 1.0,
    ...                         extra={"max_count": 12, "opened_at": "2025-03-19T04:05:00+00:00"}))
    '[RESOLVED] 楽天証券: 収束 resolved after 2 h 15 min; peak 12 reporters'
    """
    if event.kind == "source":
        return _source_summary(event)
    if event.event == "resolve":
        duration = _duration(event)
        after = f" after {duration}" if duration else ""
        return f"[RESOLVED] {event.key}: {RESOLVED_HEADLINE}{after}; peak {reporters(_peak(event))}"
    expected = f"{event.expected:.2g}" if event.expected < 10 else f"{event.expected:.0f}"
    headline = REMINDER if _is_reminder(event) else HEADLINE.get(event.kind, "")
    return f"[{event.event.upper()}] {event.key}: {reporters(event.count)} (expected {expected}) - {headline}"


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
    if event.kind == "source":
        return _source_blocks(event, label, utc_offset_hours, parent), truncate(_source_summary(event), FALLBACK_CHARS)
    if event.event == "resolve":
        duration = _duration(event)
        headline = f"peak {reporters(_peak(event))}" + (f", {duration}" if duration else "")
    elif _is_reminder(event) and not parent:
        headline = REMINDER
    else:
        headline = HEADLINE.get(event.kind, "")
    header = f"{label} {event.key} — {headline}"
    blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": header, "emoji": True}}]
    if mention and event.event == "open" and not parent:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": mention}})
    expected = f"{event.expected:.2f}".rstrip("0").rstrip(".")
    fields = [
        f"*{KIND_LABEL.get(event.kind, event.kind)}*\n{escape_post_text(event.key)}",
        f"*報告者 distinct reporters*\n{reporters(event.count)} (平常 expected {expected})",
        f"*期間 window*\n{_window_text(event, utc_offset_hours)}",
        f"*初報 first seen*\n{format_time(event.extra.get('first_seen') or event.window_start, utc_offset_hours)}",
        f"*スコア score*\n{event.score:.1f}",
    ]
    if event.event == "update" and event.extra.get("previous_count") is not None:
        fields.append(f"*前回 previous*\n{event.extra['previous_count']} → {event.count}")
    if event.event == "resolve":
        fields.append(f"*収束 resolved at*\n{format_time(event.at, utc_offset_hours)}")
        fields.append(f"*ピーク peak*\n{reporters(_peak(event))}" + (f" · {_duration(event)}" if _duration(event) else ""))
    if event.tickers:
        fields.append("*銘柄 top tickers*\n" + escape_post_text(", ".join(event.tickers)))
    brokers = [b for b in event.extra.get("brokers") or () if isinstance(b, str)]
    if brokers and event.kind != "broker":
        fields.append("*証券会社 brokers*\n" + escape_post_text(", ".join(brokers)))
    if event.extra.get("discussion_count"):
        fields.append(f"*関連投稿 discussion posts*\n{event.extra['discussion_count']}")
    blocks.append({"type": "section", "fields": [{"type": "mrkdwn", "text": f, "verbatim": True} for f in fields]})
    samples = _samples(event)[:max_samples]
    if samples and event.event != "resolve":
        title = "*最新の投稿 newest posts*" if event.event == "update" else "*投稿例 sample posts*"
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": title}})
        for post in samples:
            text = escape_post_text(" ".join(str(post.get("text") or "").split())) or (
                f"({escape_post_text(str(post.get('key', '')))})"
            )
            url = safe_url(_post_link(post))
            link = f"\n<{url}|投稿を開く open post>" if url else ""
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"> {text}{link}", "verbatim": True}})
    context: list[dict[str, Any]] = []
    board = dashboard_link(dashboard_url, event.kind, event.key, _since(event))
    if board:
        context.append({"type": "mrkdwn", "text": f"<{safe_url(board)}|ダッシュボード dashboard>"})
    explanation = event.extra.get("explanation")
    if explanation:
        context.append({"type": "mrkdwn", "text": escape_post_text(str(explanation)), "verbatim": True})
    context.append({"type": "mrkdwn", "text": SCORE_HELP, "verbatim": True})
    context.append({"type": "mrkdwn", "text": f"{event.kind}:{escape_post_text(event.key)} · "
                    f"{format_time(event.at, utc_offset_hours)}", "verbatim": True})
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
      期間 window 30 min from 2025-03-19 14:50 JST (+09:00) · 初報 first seen 2025-03-19 14:50 JST (+09:00) · score 12.3
      銘柄 tickers: 2269.HK
      - 勝手に売られた https://x.com/i/web/status/1
    """
    lines = [summary_line(event)]
    if event.kind == "source":
        return strip_control(lines[0])
    first = format_time(event.extra.get("first_seen") or event.window_start, utc_offset_hours)
    if event.event == "resolve":
        lines.append(f"  収束 resolved at {format_time(event.at, utc_offset_hours)} · 初報 first seen {first}")
        return strip_control("\n".join(lines))
    lines.append(
        f"  期間 window {_window_text(event, utc_offset_hours)} · 初報 first seen {first} · score {event.score:.1f}"
    )
    if event.tickers:
        lines.append("  銘柄 tickers: " + ", ".join(event.tickers[:10]))
    brokers = event.extra.get("brokers") or ()
    if brokers and event.kind != "broker":
        lines.append("  証券会社 brokers: " + ", ".join(map(str, brokers[:10])))
    for post in _samples(event)[:max_samples]:
        text = truncate(" ".join(strip_control(str(post.get("text") or post.get("key", ""))).split()), 120)
        url = _post_link(post) or ""
        lines.append(f"  - {text} {url}".rstrip())
    return strip_control("\n".join(lines))


def _source_summary(event: AlertEvent) -> str:
    """The one line of a source-silence event (the bot's own alert: no reporters, no score).

    >>> from datetime import UTC
    >>> t = datetime(2025, 3, 19, 6, 20, tzinfo=UTC)
    >>> summary_line(AlertEvent("open", "source", "x", t, t, 0, 0.0, 0.0,
    ...                         extra={"explanation": "X has been silent for 47 min"}))
    '[OPEN] source x: 収集停止 source silent - X has been silent for 47 min'
    """
    if event.event == "resolve":
        duration = _duration(event)
        after = f" after {duration}" if duration else ""
        return f"[RESOLVED] source {event.key}: {SOURCE_RECOVERED}{after}"
    headline = REMINDER if _is_reminder(event) else HEADLINE["source"]
    explanation = " ".join(str(event.extra.get("explanation") or "").split())
    return f"[{event.event.upper()}] source {event.key}: {headline}" + (f" - {explanation}" if explanation else "")


def _source_blocks(event: AlertEvent, label: str, utc_offset_hours: float, parent: bool) -> list[dict[str, Any]]:
    if event.event == "resolve":
        headline = SOURCE_RECOVERED
    elif _is_reminder(event) and not parent:
        headline = REMINDER
    else:
        headline = HEADLINE["source"]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": f"{label} {event.key} — {headline}", "emoji": True}},
    ]
    explanation = escape_post_text(str(event.extra.get("explanation") or ""))
    if explanation:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": explanation, "verbatim": True}})
    fields = [f"*{KIND_LABEL['source']}*\n{escape_post_text(event.key)}"]
    if event.event == "resolve":
        fields.append(f"*再開 collecting again at*\n{format_time(event.at, utc_offset_hours)}")
    else:
        fields.append(f"*無応答 silent since*\n{format_time(event.window_start, utc_offset_hours)}")
    blocks.append({"type": "section", "fields": [{"type": "mrkdwn", "text": f, "verbatim": True} for f in fields]})
    blocks.append({"type": "context", "elements": [
        {"type": "mrkdwn", "text": f"source:{escape_post_text(event.key)} · {format_time(event.at, utc_offset_hours)} · "
                                   "[alerts] source_silence_minutes", "verbatim": True}]})
    return enforce_limits(blocks)
