"""Slack delivery: the only module that talks to Slack (through ``slack_sdk``).

Two modes:

* incoming webhook (``SLACK_WEBHOOK_URL``): every event is its own message in the webhook's channel.
* bot token (``SLACK_BOT_TOKEN`` + ``SLACK_CHANNEL``, brokers routed by ``[slack].routes``): the open event
  is posted with ``chat.postMessage``; later events first edit that parent in place (``chat.update``,
  harmless to repeat) and then post a thread reply (``thread_ts``). The one call that cannot be repeated
  safely is always the last one, so a failure before it retries without a duplicate.

One retry policy (STYLE habit 4): slack_sdk's own retry handlers are switched off; a 429 whose
Retry-After is short is waited out here (on an Event, so shutdown stays prompt), a longer one and every
other transient failure (5xx, timeouts, connection errors) raise a retryable
:class:`~monitor.errors.DeliveryError` that the outbox turns into a back-off. Answers that retrying cannot
fix (``invalid_payload``, ``channel_not_found``, a revoked token ...) raise a non-retryable one naming the
fix. Messages never contain the webhook URL or the token.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.error import URLError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.webhook import WebhookClient

from monitor.alerts.config import AlertsConfig, SlackConfig
from monitor.alerts.notifiers import Delivery, SendResult
from monitor.alerts.render import render_blocks
from monitor.collectors import retry
from monitor.collectors.retry import RetryPolicy, wait_from_headers
from monitor.errors import DeliveryError, RateLimited

log = logging.getLogger(__name__)

# slack_sdk logs request URLs at DEBUG (a webhook URL is a secret) and repeats every failure at ERROR;
# our own log line per failure says it once, so the SDK's logger stays quiet even under -vv.
_SDK_LOG = logging.getLogger("monitor.alerts.slack.sdk")
_SDK_LOG.setLevel(logging.CRITICAL)

T = TypeVar("T")

WEBHOOK_HINTS = {
    "invalid_payload": "Slack could not parse the message; this is a bug in the renderer - please report it",
    "invalid_blocks": "Slack refused the Block Kit blocks; this is a bug in the renderer - please report it",
    "too_many_attachments": "the message has too many attachments; this is a bug in the renderer",
    "no_text": "the message had no text; this is a bug in the renderer - please report it",
    "user_not_found": "the webhook's user no longer exists; create a new webhook and set SLACK_WEBHOOK_URL",
    "action_prohibited": "a workspace admin restricts posting there; ask them, or use another channel's webhook",
    "channel_not_found": "the webhook's channel is gone; create a new webhook and set SLACK_WEBHOOK_URL",
    "channel_is_archived": "the webhook's channel is archived; unarchive it or create a webhook for another channel",
    "posting_to_general_channel_denied": "only admins may post to that channel; create a webhook for another channel",
    "no_service": "the webhook was removed or disabled; create a new one and set SLACK_WEBHOOK_URL",
    "no_team": "the webhook's workspace is gone; create a new webhook and set SLACK_WEBHOOK_URL",
    "team_disabled": "the webhook's workspace is disabled; create a new webhook and set SLACK_WEBHOOK_URL",
    "invalid_token": "the webhook URL was revoked; create a new webhook and set SLACK_WEBHOOK_URL",
}

API_HINTS = {
    "not_authed": "no token reached Slack; set SLACK_BOT_TOKEN",
    "invalid_auth": "SLACK_BOT_TOKEN was rejected; copy the bot token (xoxb-...) again",
    "token_revoked": "SLACK_BOT_TOKEN was revoked; reinstall the app and set the new token",
    "account_inactive": "the bot's account is deactivated; reinstall the app and set SLACK_BOT_TOKEN",
    "missing_scope": "the bot token lacks the chat:write scope; add it and reinstall the app",
    "channel_not_found": "the channel does not exist or the bot cannot see it; fix SLACK_CHANNEL / [slack].routes",
    "not_in_channel": "the bot is not in the channel; invite it (/invite @your-bot) or fix [slack].routes",
    "is_archived": "the channel is archived; unarchive it or route the alerts elsewhere",
    "msg_too_long": "the message is too long; this is a bug in the renderer - please report it",
    "invalid_blocks": "Slack refused the Block Kit blocks; this is a bug in the renderer - please report it",
    "msg_blocks_too_long": "the blocks exceed Slack's size budget; this is a bug in the renderer - please report it",
    "no_text": "the message had no text; this is a bug in the renderer - please report it",
}
API_TRANSIENT = {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}


class _RateLimited(Exception):
    def __init__(self, wait: float, what: str) -> None:
        self.wait = wait
        self.what = what


def retry_after_seconds(headers: Mapping[str, Any] | None, default: float = 30.0) -> float:
    """The wait a 429 asks for, read by the one policy's header parser (Retry-After in seconds or as an
    HTTP date, and the rate-limit reset headers); ``default`` when absent or unreadable.

    >>> retry_after_seconds({"Retry-After": "7"}), retry_after_seconds({"retry-after": ["2"]}), retry_after_seconds({})
    (7.0, 2.0, 30.0)
    >>> retry_after_seconds({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})  # a date already past
    0.0
    """
    flat = {str(k): (v[0] if v else "") if isinstance(v, list | tuple) else v for k, v in (headers or {}).items()}
    wait = wait_from_headers(flat)
    return default if wait is None else wait


def describe_body(body: str) -> str:
    """A short, one-line description of an error body: the text itself, or an HTML page's title.

    >>> describe_body("invalid_payload")
    'invalid_payload'
    >>> describe_body("<!DOCTYPE html><html><head><title>Server Error | Slack</title></head></html>")
    "HTML page 'Server Error | Slack'"
    """
    body = (body or "").strip()
    if body.startswith("<") or "<html" in body[:200].lower():
        match = re.search(r"<title>(.*?)</title>", body, re.I | re.S)
        title = " ".join(match.group(1).split()) if match else "untitled"
        return f"HTML page {title[:80]!r}"
    return " ".join(body.split())[:200] or "(empty body)"


def _network_error(where: str, exc: BaseException) -> DeliveryError:
    reason = getattr(exc, "reason", None) or exc
    if isinstance(exc, TimeoutError | socket.timeout) or "timed out" in str(reason):
        what = "no answer before the timeout"
    else:
        what = f"cannot connect ({' '.join(str(reason).split())[:120]})"
    return DeliveryError(f"{where}: {what}; will retry (check the network or Slack's status page)", retryable=True)


class _SlackBase:
    name = "slack"

    def __init__(
        self,
        slack: SlackConfig,
        alerts: AlertsConfig,
        *,
        stop: threading.Event | None = None,
    ) -> None:
        self.slack = slack
        self.alerts = alerts
        self.stop = stop or threading.Event()

    def _blocks(self, delivery: Delivery, *, parent: bool = False) -> tuple[list[dict[str, Any]], str]:
        return render_blocks(
            delivery.event,
            dashboard_url=self.alerts.dashboard_url,
            utc_offset_hours=self.alerts.display_utc_offset_hours,
            mention=self.slack.open_mention,
            parent=parent,
            max_samples=self.alerts.max_samples,
        )

    def _with_rate_limit(self, call: Callable[[], T]) -> T:
        """Run ``call``; wait out a short 429 in place (within max_retry_wait_seconds in all), else give up."""
        def attempt() -> T:
            try:
                return call()
            except _RateLimited as limited:
                raise RateLimited(f"{limited.what}: rate limited by Slack (Retry-After {limited.wait:g}s)",
                                  limited.wait) from None

        # The one retry policy: a short wait is slept through on the stop event; a longer one, repeated
        # 429s and shutdown go back to the outbox, whose back-off is the same policy's.
        policy = RetryPolicy(attempts=1, max_wait=self.slack.max_retry_wait_seconds)
        try:
            return retry.call(attempt, policy=policy, stop=self.stop, what="Slack")
        except RateLimited as exc:
            raise DeliveryError(f"{exc}; will retry then", retryable=True, retry_after=exc.wait_seconds) from None
        except retry.Shutdown:
            raise DeliveryError("Slack: shutting down during a rate-limit wait; will retry", retryable=True,
                                retry_after=0) from None


class SlackWebhookNotifier(_SlackBase):
    """Posts each event to an incoming webhook (one channel, no threads)."""

    def __init__(self, url: str, slack: SlackConfig, alerts: AlertsConfig, *,
                 stop: threading.Event | None = None) -> None:
        super().__init__(slack, alerts, stop=stop)
        self.client = WebhookClient(
            str.__str__(url), timeout=slack.timeout_seconds, retry_handlers=[], logger=_SDK_LOG  # type: ignore[arg-type]
        )

    def send(self, delivery: Delivery) -> SendResult | None:
        blocks, text = self._blocks(delivery)
        self._with_rate_limit(lambda: self._post(text, blocks))
        return None

    def _post(self, text: str, blocks: list[dict[str, Any]]) -> None:
        where = "slack webhook"
        try:
            response = self.client.send(text=text, blocks=blocks)
        except (URLError, OSError) as exc:  # TimeoutError and socket.timeout are OSErrors
            raise _network_error(where, exc) from exc
        except SlackClientError as exc:
            raise DeliveryError(f"{where}: {exc}; check SLACK_WEBHOOK_URL", retryable=False) from exc
        status, body = response.status_code, response.body or ""
        if status == 200:
            return
        if status == 429:
            raise _RateLimited(retry_after_seconds(response.headers), where)
        detail = describe_body(body)
        if status >= 500:
            raise DeliveryError(f"{where}: HTTP {status} {detail}; Slack is failing, will retry", retryable=True)
        code = body.strip()
        hint = WEBHOOK_HINTS.get(code, "Slack refused the message; check SLACK_WEBHOOK_URL and the channel")
        raise DeliveryError(f"{where}: HTTP {status} {detail}: {hint}", retryable=False)


METADATA_EVENT = "incident_monitor_alert_event"  # Slack message metadata type carrying our event id
LOOKUP_LIMIT = 100  # messages looked through for an event already posted


class SlackBotNotifier(_SlackBase):
    """chat.postMessage for the open; updates and the resolve edit the parent and reply in its thread."""

    def __init__(self, token: str, slack: SlackConfig, alerts: AlertsConfig, *,
                 stop: threading.Event | None = None) -> None:
        super().__init__(slack, alerts, stop=stop)
        self.client = WebClient(
            token=str.__str__(token),
            base_url=slack.api_url,
            timeout=slack.timeout_seconds,  # type: ignore[arg-type]
            retry_handlers=[],
            logger=_SDK_LOG,
        )

    def send(self, delivery: Delivery) -> SendResult | None:
        event = delivery.event
        blocks, text = self._blocks(delivery)
        metadata = {"event_type": METADATA_EVENT, "event_payload": {"event_id": delivery.event_id}}
        threaded = bool(delivery.slack_ts and delivery.slack_channel and event.event != "open")
        if delivery.attempt > 1:
            # A retry may follow a crash after Slack accepted the message but before it was recorded as sent:
            # look for this event's key in the messages' metadata before sending it again.
            found = self._already_posted(delivery, threaded)
            if found is not None:
                log.warning("alert %s: event %s was already in Slack (ts %s); not sending it again",
                            delivery.alert_id, delivery.event_id, found[1])
                return None if threaded else SendResult(slack_channel=found[0], slack_ts=found[1])
        if threaded:
            parent_blocks, parent_text = self._blocks(delivery, parent=True)
            try:
                self._with_rate_limit(lambda: self._call(
                    "chat.update", self.client.chat_update,
                    channel=delivery.slack_channel, ts=delivery.slack_ts, text=parent_text, blocks=parent_blocks,
                ))
            except DeliveryError as exc:
                if exc.retryable:
                    raise
                # The parent was deleted or cannot be edited: the thread reply still carries the news.
                log.warning("alert %s: parent message not edited: %s", delivery.alert_id, exc)
            self._with_rate_limit(lambda: self._call(
                "chat.postMessage", self.client.chat_postMessage,
                channel=delivery.slack_channel, thread_ts=delivery.slack_ts, text=text, blocks=blocks,
                reply_broadcast=event.event == "resolve", metadata=metadata,
            ))
            return None
        # No parent (webhook-less first message, or the open was silenced): this message becomes the thread.
        channel = self.slack.channel_for(event.kind, event.key)
        response = self._with_rate_limit(lambda: self._call(
            "chat.postMessage", self.client.chat_postMessage, channel=channel, text=text, blocks=blocks,
            metadata=metadata,
        ))
        return SendResult(slack_channel=str(response.get("channel") or channel), slack_ts=response.get("ts"))

    def _already_posted(self, delivery: Delivery, threaded: bool) -> tuple[str, str] | None:
        """(channel, ts) of a message carrying this event's id in its metadata, among the newest
        ``LOOKUP_LIMIT`` of the alert's thread (or of the channel, for a first message)."""
        event = delivery.event
        if threaded:
            channel = str(delivery.slack_channel)
            response = self._with_rate_limit(lambda: self._call(
                "conversations.replies", self.client.conversations_replies, channel=channel, ts=delivery.slack_ts,
                include_all_metadata=True, limit=LOOKUP_LIMIT))
        else:
            channel = self.slack.channel_for(event.kind, event.key)
            response = self._with_rate_limit(lambda: self._call(
                "conversations.history", self.client.conversations_history, channel=channel,
                include_all_metadata=True, limit=LOOKUP_LIMIT))
        for message in response.get("messages") or ():
            meta = message.get("metadata") or {}
            if meta.get("event_type") == METADATA_EVENT and \
                    (meta.get("event_payload") or {}).get("event_id") == delivery.event_id:
                return channel, str(message.get("ts"))
        return None

    def _call(self, method: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
        where = f"slack {method} to {kwargs.get('channel')}"
        try:
            return fn(**kwargs)
        except SlackApiError as exc:
            response = exc.response
            status = getattr(response, "status_code", 0)
            error = str(response.get("error", "") if response is not None else "") or "unknown_error"
            if status == 429 or error == "ratelimited":
                raise _RateLimited(retry_after_seconds(getattr(response, "headers", None)), where) from exc
            if error.startswith("Received a response in a non-JSON format"):
                detail = describe_body(str(getattr(response, "data", {}).get("error", ""))
                                       .removeprefix("Received a response in a non-JSON format: "))
                error = f"non-JSON answer ({detail})"
            if status >= 500 or error in API_TRANSIENT or error.startswith("non-JSON"):
                raise DeliveryError(f"{where}: HTTP {status} {error}; Slack is failing, will retry",
                                    retryable=True) from exc
            hint = API_HINTS.get(error, "Slack refused the request; check SLACK_BOT_TOKEN and the channel")
            raise DeliveryError(f"{where}: {error}: {hint}", retryable=False) from exc
        except (URLError, OSError) as exc:
            raise _network_error(where, exc) from exc
        except SlackClientError as exc:
            raise DeliveryError(f"{where}: {exc}; check SLACK_API_URL", retryable=False) from exc
