"""A real HTTP server on 127.0.0.1 that speaks Slack's incoming-webhook and Web API wire formats.

Tests point ``SlackConfig.webhook_url`` / ``api_url`` at it and script its answers; it records every
request so tests assert on what Slack would have received. Nothing is monkeypatched: the notifiers go
through slack_sdk and urllib exactly as in production.

Webhook (``POST /services/...``): 200 ``ok`` (text/plain) by default. Web API (``POST /api/<method>``):
``chat.postMessage`` and ``chat.update`` answer ``{"ok": true, "channel": ..., "ts": ...}``;
``conversations.history`` / ``conversations.replies`` (GET) list the posted messages with their
``metadata`` when ``include_all_metadata`` is set; a bad token
gets ``{"ok": false, "error": "invalid_auth"}``. Scripted answers (``push``) are served first, in order,
per endpoint: any status/body/headers, a 429 with Retry-After, the real HTML 500 page, a delay longer than
the client's timeout.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

WEBHOOK_PATH = "/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"


@dataclass
class Reply:
    status: int = 200
    body: str = "ok"
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "text/plain;charset=utf-8"})
    delay: float = 0.0  # seconds to wait before answering (a timeout when longer than the client's)


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def endpoint(self) -> str:
        path = self.path.split("?", 1)[0]
        return "webhook" if path.startswith("/services/") else path.removeprefix("/api/")

    @property
    def json(self) -> dict[str, Any]:
        if self.method == "GET":
            return {k: v[0] for k, v in parse_qs(self.path.partition("?")[2]).items()}
        if "application/x-www-form-urlencoded" in self.headers.get("Content-Type", ""):
            return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}
        return json.loads(self.body.decode("utf-8"))


def _metadata(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def ok_webhook() -> Reply:
    return Reply()


def rate_limited(retry_after: float, *, api: bool = False) -> Reply:
    if api:
        return Reply(429, json.dumps({"ok": False, "error": "ratelimited"}),
                     {"Content-Type": "application/json; charset=utf-8", "Retry-After": f"{retry_after:g}"})
    return Reply(429, "", {"Content-Type": "text/plain;charset=utf-8", "Retry-After": f"{retry_after:g}"})


def html_500(shared: Path) -> Reply:
    """Slack's real 'Server Error | Slack' page."""
    body = (shared / "real" / "slack" / "webhook_500_error_body.html").read_text(encoding="utf-8")
    return Reply(500, body, {"Content-Type": "text/html"})


def webhook_errors(shared: Path) -> list[Reply]:
    """Every documented webhook error answer with a body (400 invalid_payload, 404 channel_not_found ...)."""
    data = json.loads((shared / "real" / "slack" / "webhook_errors.json").read_text(encoding="utf-8"))
    return [Reply(e["status"], e["body"], {"Content-Type": "text/plain;charset=utf-8"})
            for e in data["errors"] if e.get("body")]


def api_error(error: str, status: int = 200) -> Reply:
    return Reply(status, json.dumps({"ok": False, "error": error}), {"Content-Type": "application/json; charset=utf-8"})


class SlackServer:
    """Start with ``with SlackServer() as slack:``; ``slack.webhook_url`` and ``slack.api_url`` point at it."""

    def __init__(self, token: str = "xoxb-test-token") -> None:
        self.token = token
        self.requests: list[Recorded] = []
        self._scripts: dict[str, deque[Reply]] = {}
        self._lock = threading.Lock()
        self._ts = 0
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}  # (channel, ts) -> current message
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:
                self.do_POST("GET")

            def do_POST(self, method: str = "POST") -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                record = Recorded(method, self.path, dict(self.headers.items()), body, time.monotonic())
                reply = server._answer(record)
                if reply.delay:
                    time.sleep(reply.delay)
                data = reply.body.encode("utf-8")
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    # -- lifecycle --------------------------------------------------------------------------------------

    def __enter__(self) -> SlackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def webhook_url(self) -> str:
        return self.base_url + WEBHOOK_PATH

    @property
    def api_url(self) -> str:
        return self.base_url + "/api/"

    # -- scripting and inspection ---------------------------------------------------------------------

    def push(self, endpoint: str, *replies: Reply) -> None:
        """Queue answers for ``endpoint`` ("webhook", "chat.postMessage", "chat.update"), served in order."""
        with self._lock:
            self._scripts.setdefault(endpoint, deque()).extend(replies)

    def calls(self, endpoint: str | None = None) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if endpoint is None or r.endpoint == endpoint]

    # -- the fake Slack ---------------------------------------------------------------------------------

    def _answer(self, record: Recorded) -> Reply:
        with self._lock:
            self.requests.append(record)
            script = self._scripts.get(record.endpoint)
            if script:
                return script.popleft()
        if record.endpoint == "webhook":
            return self._webhook(record)
        return self._web_api(record)

    def _webhook(self, record: Recorded) -> Reply:
        if record.path != WEBHOOK_PATH:
            return Reply(404, "no_service")
        try:
            payload = record.json
        except ValueError:
            return Reply(400, "invalid_payload")
        if not payload.get("text") and not payload.get("blocks"):
            return Reply(400, "no_text")
        return ok_webhook()

    def _web_api(self, record: Recorded) -> Reply:
        if record.headers.get("Authorization") != f"Bearer {self.token}":
            return api_error("invalid_auth")
        try:
            args = record.json
        except ValueError:
            return api_error("invalid_arguments")
        channel = args.get("channel")
        if not channel:
            return api_error("channel_not_found")
        with self._lock:
            if record.endpoint == "chat.postMessage":
                self._ts += 1
                ts = f"1742367600.{self._ts:06d}"
                self.messages[(channel, ts)] = {"text": args.get("text"), "blocks": args.get("blocks"),
                                                "thread_ts": args.get("thread_ts"), "ts": ts,
                                                "metadata": _metadata(args.get("metadata"))}
                body = {"ok": True, "channel": channel, "ts": ts,
                        "message": {"text": args.get("text"), "ts": ts, "thread_ts": args.get("thread_ts")}}
            elif record.endpoint == "chat.update":
                key = (channel, args.get("ts"))
                if key not in self.messages:
                    return api_error("message_not_found")
                self.messages[key].update(text=args.get("text"), blocks=args.get("blocks"))
                body = {"ok": True, "channel": channel, "ts": args.get("ts"), "text": args.get("text")}
            elif record.endpoint in ("conversations.history", "conversations.replies"):
                # Newest first, as Slack lists them; metadata only when asked for (include_all_metadata).
                parent = args.get("ts")
                found = [
                    {k: v for k, v in m.items() if k != "metadata" or args.get("include_all_metadata") in ("1", "true")}
                    for (ch, ts), m in sorted(self.messages.items(), key=lambda kv: kv[0][1], reverse=True)
                    if ch == channel and (m["thread_ts"] == parent or ts == parent if parent else not m["thread_ts"])
                ]
                body = {"ok": True, "messages": found[: int(args.get("limit") or 100)], "has_more": False}
            else:
                return api_error("unknown_method", 404)
        return Reply(200, json.dumps(body), {"Content-Type": "application/json; charset=utf-8"})
