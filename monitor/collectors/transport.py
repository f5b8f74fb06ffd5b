"""The one HTTP seam of the collectors: every request of X, Reddit and Bluesky search goes through here.

* :func:`http_client` builds the ``httpx.Client`` the Reddit and Bluesky collectors speak plain HTTP
  with (Reddit's OAuth listings and ``app.bsky.feed.searchPosts`` are small JSON APIs; plain HTTP keeps
  each raw body verbatim and leaves retries to :mod:`monitor.collectors.retry` alone).
* :class:`HttpxAdapter` is a ``requests`` transport adapter (``Session.mount``, public requests API) that
  sends tweepy's requests through the same ``httpx`` transport. tweepy's ``Client`` has no base-URL
  option (it joins the fixed ``https://api.twitter.com`` with each route), so the adapter, mounted for
  that host on the client's ``session`` attribute, moves the request to the configured ``api_base_url``.

Every collector takes a ``transport`` argument (an ``httpx.BaseTransport``); None means the real network.
Tests pass ``httpx.MockTransport`` or leave it None and point the base URLs at loopback servers. No
transport retries: ``httpx`` makes none, and a failure reaches the one retry policy as it happened.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import httpx
import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers

TWEEPY_HOSTS = ("https://api.twitter.com", "https://api.x.com")


def http_client(*, timeout: float, headers: Mapping[str, str] | None = None,
                transport: httpx.BaseTransport | None = None) -> httpx.Client:
    """The ``httpx.Client`` of one collector: the given timeout, no redirects followed, ``transport``
    (None: the network) underneath."""
    return httpx.Client(timeout=timeout, headers=dict(headers or {}), transport=transport, follow_redirects=False)


def without_userinfo(url: str) -> str:
    """A URL fit for provenance: no user:password, no fragment.

    >>> without_userinfo("https://user:pw@api.example:8443/2/tweets?q=1#x")
    'https://api.example:8443/2/tweets?q=1'
    """
    return str(httpx.URL(url).copy_with(userinfo=b"", fragment=None))


class HttpxAdapter(BaseAdapter):
    """Sends a ``requests`` session's requests through an ``httpx`` transport, rebased to ``base_url``."""

    def __init__(self, base_url: str, timeout: float, transport: httpx.BaseTransport | None = None) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/")
        self.client = http_client(timeout=timeout, transport=transport)

    def rebase(self, url: str) -> str:
        """>>> HttpxAdapter("http://127.0.0.1:9/", 1).rebase("https://api.twitter.com/2/tweets/counts/recent?q=a")
        'http://127.0.0.1:9/2/tweets/counts/recent?q=a'
        """
        for host in TWEEPY_HOSTS:
            if url.startswith(host + "/"):
                return self.base_url + url[len(host):]
        return url

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None,
             verify: Any = True, cert: Any = None, proxies: Any = None) -> requests.Response:
        body = request.body
        answer = self.client.request(
            request.method or "GET", self.rebase(request.url or ""),
            headers={k: v.decode("latin-1") if isinstance(v, bytes) else v for k, v in request.headers.items()},
            content=body.encode() if isinstance(body, str) else body if isinstance(body, bytes) else None,
            timeout=timeout if isinstance(timeout, int | float) else httpx.USE_CLIENT_DEFAULT,
        )
        response = requests.Response()
        response.status_code = answer.status_code
        response.headers = CaseInsensitiveDict(answer.headers.items())
        response.raw = io.BytesIO(answer.content)  # read in full: a cut-off body fails here, retried by the policy
        response.encoding = get_encoding_from_headers(response.headers)
        response.reason = answer.reason_phrase
        response.url = str(answer.request.url)
        response.request = request
        response.connection = self  # type: ignore[assignment]  # requests types it as its own HTTPAdapter
        return response

    def close(self) -> None:
        self.client.close()
