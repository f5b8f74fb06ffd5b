"""Alert messages as a communications team reads them, and hostile post text made harmless."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

from monitor.alerts.notifiers import Delivery, TerminalNotifier
from monitor.alerts.render import render_blocks, render_text, summary_line
from monitor.events import AlertEvent

T = datetime(2025, 3, 19, 6, 20, tzinfo=UTC)


def event(name="open", count=7, posts=None, **extra) -> AlertEvent:
    return AlertEvent(name, "broker", "楽天証券", T, T - timedelta(minutes=45), count, 0.4, 12.3, (),
                      ("x:1",), extra={"posts": posts or [], **extra})


def texts(blocks) -> list[str]:
    out = []
    for b in blocks:
        if isinstance(b.get("text"), dict):
            out.append(b["text"]["text"])
        out += [f["text"] for f in b.get("fields") or ()]
        out += [e["text"] for e in b.get("elements") or () if "text" in e]
    return out


def test_one_reporter_is_singular():
    assert "1 reporter (" in summary_line(event(count=1))
    blocks, fallback = render_blocks(event(count=1))
    assert "1 reporter " in fallback and any("1 reporter (平常" in t for t in texts(blocks))
    assert "7 reporters" in summary_line(event(count=7))


def test_resolve_says_resolved_with_peak_and_duration_not_the_surge():
    ev = event("resolve", count=2, max_count=12, opened_at=(T - timedelta(hours=2, minutes=5)).isoformat())
    blocks, fallback = render_blocks(ev)
    header = blocks[0]["text"]["text"]
    assert "RESOLVED" in header and "peak 12 reporters" in header and "2 h 5 min" in header
    assert "急増" not in header and "surge" not in header
    assert fallback.startswith("[RESOLVED] 楽天証券: 収束 resolved after 2 h 5 min; peak 12 reporters")
    assert "surge" not in render_text(ev)


def test_update_shows_newest_posts_first_and_says_when_it_is_a_reminder():
    posts = [{"key": f"x:{i}", "text": f"報告{i}", "created_at": (T - timedelta(minutes=40 - i)).isoformat()}
             for i in range(3)]
    blocks, fallback = render_blocks(event("update", posts=posts, reason="repeat"))
    shown = [t for t in texts(blocks) if t.startswith("> ")]
    assert [s.split("\n")[0] for s in shown] == ["> 報告2", "> 報告1", "> 報告0"]
    assert "reminder" in blocks[0]["text"]["text"] and "reminder" in fallback
    grown, fallback = render_blocks(event("update", posts=posts, reason="growth"))
    assert "reminder" not in grown[0]["text"]["text"] and "reminder" not in fallback


def test_times_carry_the_zone_and_its_offset_and_score_is_explained():
    blocks, _ = render_blocks(event(first_seen=(T - timedelta(minutes=30)).isoformat()))
    joined = "\n".join(texts(blocks))
    assert "2025-03-19 14:50 JST (+09:00)" in joined and "2025-03-19 15:20 JST (+09:00)" in joined
    assert any(t.startswith("score = -log10") for t in texts(blocks))


def test_hostile_post_text_cannot_format_mention_or_link():
    hostile = "<!channel> *全員* _見て_ ~消えた~ `code` <https://evil.example|公式> & more"
    ev = event(posts=[{"key": "x:1902345678901234567", "text": hostile, "url": "https://evil.example/phish"}])
    blocks, _ = render_blocks(ev)
    sample = next(b for b in blocks if b.get("text", {}).get("text", "").startswith("> "))
    body = sample["text"]["text"]
    assert sample["text"]["verbatim"] is True
    assert "<!channel>" not in body and "&lt;!channel&gt;" in body and "&amp; more" in body
    assert not any(c in body.split("\n")[0] for c in "*_~`")
    # the link is built from the post's source and id, never the record's url
    assert body.endswith("<https://x.com/i/web/status/1902345678901234567|投稿を開く open post>")
    assert "evil.example/phish" not in str(blocks)


def test_canonical_links_for_bluesky_and_reddit_and_none_for_odd_ids():
    posts = [{"key": "bluesky:at://did:plc:abc/app.bsky.feed.post/3kq2x", "text": "a", "url": "https://evil/1"},
             {"key": "reddit:t3_1jes8k2", "text": "b", "url": "https://evil/2"},
             {"key": "x:not-a-number", "text": "c", "url": "https://evil/3"}]
    blocks, _ = render_blocks(event(posts=posts))
    body = "\n".join(texts(blocks))
    assert "<https://bsky.app/profile/did:plc:abc/post/3kq2x|" in body
    assert "<https://www.reddit.com/comments/1jes8k2|" in body
    assert "evil" not in body


def test_terminal_output_has_no_escape_sequences_or_control_characters():
    nasty = "被害\x1b[2J\x1b]0;pwned\x07\x1b[31m赤\x1b[0m\x00\x08\u202eexe.txt"
    out = io.StringIO()
    ev = event(posts=[{"key": "x:1", "text": nasty}])
    TerminalNotifier(out).send(Delivery(item_id=1, event_id=1, alert_id=1, event=ev, attempt=1))
    text = out.getvalue()
    assert "被害赤exe.txt" in text
    assert not any(ord(c) < 32 and c not in "\n" or 0x7f <= ord(c) <= 0x9f or c == "\u202e" for c in text)
