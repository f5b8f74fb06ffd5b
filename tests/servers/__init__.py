"""Loopback fakes of the services the collectors talk to: real sockets on 127.0.0.1, real wire formats.

:class:`LoopbackHTTP` is a threaded HTTP/1.1 server whose routes are plain methods returning
``(status, headers, body)``; faults queued with :meth:`LoopbackHTTP.fault` replace the next answers of a
path: an HTTP status with headers, a delay longer than the client's timeout, a connection reset, a body
cut short, or the previous answer repeated.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

Answer = tuple[int, dict[str, str], bytes]


def json_answer(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Answer:
    return status, {"content-type": "application/json; charset=utf-8", **(headers or {})}, json.dumps(
        obj, ensure_ascii=False
    ).encode("utf-8")


@dataclass
class Fault:
    kind: str  # status | delay | reset | truncate | cut | repeat | none (answer normally)
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    seconds: float = 0.0


@dataclass
class Request:
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.time)  # epoch seconds it arrived, to compare with reset headers


class LoopbackHTTP:
    """Subclass and define ``route(request) -> Answer``."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.faults: dict[str, list[Fault]] = defaultdict(list)
        self.last_answer: dict[str, Answer] = {}
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def _handle(self) -> None:
                owner._serve(self)

            do_GET = do_POST = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> LoopbackHTTP:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def fault(self, path: str, *faults: Fault) -> None:
        with self._lock:
            self.faults[path].extend(faults)

    def calls(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]

    def route(self, request: Request) -> Answer:  # pragma: no cover - subclasses define it
        raise NotImplementedError

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        split = urlsplit(handler.path)
        length = int(handler.headers.get("content-length") or 0)
        body = handler.rfile.read(length) if length else b""
        params = {k: v[-1] for k, v in parse_qs(split.query).items()}
        if handler.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            params.update({k: v[-1] for k, v in parse_qs(body.decode()).items()})
        request = Request(handler.command, split.path, params, {k.lower(): v for k, v in handler.headers.items()}, body)
        with self._lock:
            self.requests.append(request)
            queue = self.faults.get(split.path)
            fault = queue.pop(0) if queue else None
        if fault is not None and fault.kind == "reset":
            # SO_LINGER 0 makes close() send RST: the client sees "connection reset by peer".
            handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            handler.connection.close()
            handler.close_connection = True
            return
        if fault is not None and fault.kind == "delay":
            time.sleep(fault.seconds)
        if fault is not None and fault.kind == "status":
            answer: Answer = (fault.status, {"content-type": "application/json", **fault.headers}, fault.body)
        elif fault is not None and fault.kind == "repeat" and split.path in self.last_answer:
            answer = self.last_answer[split.path]
        else:
            answer = self.route(request)
            if answer[0] == 200:
                self.last_answer[split.path] = answer
        status, headers, payload = answer
        declared = len(payload)
        if fault is not None and fault.kind == "truncate":  # a proxy that cut the body and fixed the length
            payload = payload[: len(payload) // 2]
            declared = len(payload)
        if fault is not None and fault.kind == "cut":  # the connection dropped mid-body
            payload = payload[: len(payload) // 2]
            handler.close_connection = True
        try:
            handler.send_response(status)
            for key, value in headers.items():
                handler.send_header(key, value)
            handler.send_header("content-length", str(declared))
            handler.end_headers()
            handler.wfile.write(payload)
            handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout fault)
            handler.close_connection = True


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """Serve an ASGI app with a real uvicorn server on a free loopback port; yields its base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
