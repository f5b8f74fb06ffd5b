"""A loopback Jetstream: a real WebSocket server on 127.0.0.1 speaking Jetstream's JSON event format.

``/subscribe?wantedCollections=...&cursor=TIME_US`` replays every stored event with ``time_us >= cursor``
(commits only of the wanted collections; identity and account events always, as Jetstream does), then
tails: events added later with :meth:`FakeJetstream.add` are sent to every open connection.
Without ``cursor`` a connection starts at the live tail.

Faults, per connection in the order connections arrive (:meth:`FakeJetstream.drop_after`): the socket is
shut down without a close frame after N events, as a crashed instance or a cut network would. Broken
frames (truncated JSON, events missing fields) are ordinary entries of the stream, added with
:meth:`FakeJetstream.add_raw`.
"""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection, serve

T0_US = 1_742_364_000_000_000  # 2025-03-19T06:00:00Z, the week of the wave


def iso(time_us: int) -> str:
    return datetime.fromtimestamp(time_us / 1_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def post_event(
    did: str,
    rkey: str,
    text: str,
    time_us: int,
    *,
    langs: list[str] | None = None,
    created_at: str | None = None,
    reply_parent: str | None = None,
    embed: dict[str, Any] | None = None,
    template: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``commit``/``create`` event of ``app.bsky.feed.post`` as Jetstream sends it.

    ``template`` is a real post record to start from (its other fields are kept); ``langs=None`` leaves
    ``langs`` out, as some clients do.
    """
    record: dict[str, Any] = dict(template or {})
    record.update({"$type": "app.bsky.feed.post", "text": text, "createdAt": created_at or iso(time_us)})
    record.pop("langs", None)
    if langs is not None:
        record["langs"] = langs
    if reply_parent is not None:
        root = {"uri": reply_parent, "cid": "bafyreiparentcid"}
        record["reply"] = {"root": root, "parent": root}
    if embed is not None:
        record["embed"] = embed
    return {
        "did": did,
        "time_us": time_us,
        "kind": "commit",
        "commit": {
            "rev": f"3l{time_us % 10**11:011d}",
            "operation": "create",
            "collection": "app.bsky.feed.post",
            "rkey": rkey,
            "record": record,
            "cid": f"bafyrei{rkey}",
        },
    }


def like_event(did: str, rkey: str, time_us: int) -> dict[str, Any]:
    """A commit of another collection: filtered out by ``wantedCollections``."""
    return {
        "did": did, "time_us": time_us, "kind": "commit",
        "commit": {"rev": "3lx", "operation": "create", "collection": "app.bsky.feed.like", "rkey": rkey,
                   "record": {"$type": "app.bsky.feed.like", "createdAt": iso(time_us),
                              "subject": {"uri": f"at://{did}/app.bsky.feed.post/x", "cid": "c"}},
                   "cid": "bafyreilike"},
    }


def identity_event(did: str, handle: str, time_us: int) -> dict[str, Any]:
    return {"did": did, "time_us": time_us, "kind": "identity",
            "identity": {"did": did, "handle": handle, "seq": time_us // 1000, "time": iso(time_us)}}


def account_event(did: str, time_us: int, active: bool = True) -> dict[str, Any]:
    return {"did": did, "time_us": time_us, "kind": "account",
            "account": {"active": active, "did": did, "seq": time_us // 1000, "time": iso(time_us)}}


@dataclass(frozen=True)
class Entry:
    time_us: int
    frame: str
    collection: str | None  # None: not a commit (identity, account) or unreadable: always sent


class FakeJetstream:
    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self.connections: list[dict[str, list[str]]] = []  # query parameters of each connection
        self.sent: list[int] = []  # frames sent per connection
        self._drops: list[int | None] = []
        self._cond = threading.Condition()
        self._closing = False
        self.server = serve(self._handle, "127.0.0.1", 0, compression=None, ping_interval=None)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.socket.getsockname()[:2]
        return f"ws://{host}:{port}/subscribe"

    def __enter__(self) -> FakeJetstream:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self.server.shutdown()
        self.thread.join(timeout=5)

    # --- the stream -------------------------------------------------------------------------------------

    def add(self, *events: dict[str, Any]) -> None:
        for event in events:
            commit = event.get("commit") if isinstance(event.get("commit"), dict) else None
            self._append(Entry(int(event["time_us"]), json.dumps(event, ensure_ascii=False),
                               commit.get("collection") if commit else None))

    def add_raw(self, time_us: int, frame: str) -> None:
        """A frame sent as is (truncated JSON, an object missing fields) at the stream position ``time_us``."""
        self._append(Entry(time_us, frame, None))

    def _append(self, entry: Entry) -> None:
        with self._cond:
            self.entries.append(entry)
            self.entries.sort(key=lambda e: e.time_us)
            self._cond.notify_all()

    def drop_after(self, *counts: int | None) -> None:
        """The next connections are cut after that many frames (``None``: this one is not cut)."""
        self._drops.extend(counts)

    # --- serving ----------------------------------------------------------------------------------------

    def _handle(self, ws: ServerConnection) -> None:
        params = parse_qs(urlsplit(ws.request.path).query)
        with self._cond:
            index = len(self.connections)
            self.connections.append(params)
            self.sent.append(0)
            drop = self._drops.pop(0) if self._drops else None
            wanted = set(params.get("wantedCollections", []))
            cursor = int(params["cursor"][0]) if params.get("cursor") else None
            # Without a cursor Jetstream starts at the live tail: nothing stored so far is replayed.
            position = 0 if cursor is not None else len(self.entries)
            start = cursor if cursor is not None else 0
        try:
            while True:
                with self._cond:
                    while position >= len(self.entries) and not self._closing:
                        self._cond.wait(timeout=0.2)
                        if self._closing:
                            break
                    if self._closing:
                        return
                    entry = self.entries[position]
                    position += 1
                if entry.time_us < start:
                    continue
                if entry.collection is not None and wanted and entry.collection not in wanted:
                    continue
                if drop is not None and self.sent[index] >= drop:
                    # No close frame: the client sees an abnormal closure (1006), as after a crash.
                    ws.socket.shutdown(socket.SHUT_RDWR)
                    return
                ws.send(entry.frame)
                with self._cond:
                    self.sent[index] += 1
        except (ConnectionClosed, OSError):
            return
