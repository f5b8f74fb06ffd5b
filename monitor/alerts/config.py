"""Alert lifecycle and notifier settings: two frozen dataclasses (``[alerts]`` and ``[slack]`` in the TOML file).

Durations of the lifecycle are in minutes of STREAM time (the ``now`` the pipeline passes in), so a replay
of last year's stream plans exactly as the live bot did. Delivery back-off is in seconds of the same clock.
Slack secrets come only from the environment (``SLACK_WEBHOOK_URL``, ``SLACK_BOT_TOKEN`` or their ``_FILE``
variants); the channel and the Web API base URL may come from the environment too.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated

from pydantic import Field

from monitor.errors import ConfigError
from monitor.settings import (
    HttpUrl,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    Secret,
    UtcOffsetHours,
)
from nlp.entities import BROKERS


@dataclass(frozen=True)
class AlertsConfig:
    """How alerts open, update, resolve and get delivered (Alertmanager-style)."""

    group_wait_minutes: NonNegativeFloat = field(
        default=5.0,
        metadata={"help": "a key must keep firing this long before the alert opens; a shorter flap never pages"},
    )
    repeat_interval_minutes: PositiveFloat = field(
        default=240.0,
        metadata={"help": "an open alert without material change sends a reminder update this often"},
    )
    resolve_after_minutes: NonNegativeFloat = field(
        default=30.0, metadata={"help": "an open alert resolves after its key has been quiet this long"}
    )
    cooldown_minutes: NonNegativeFloat = field(
        default=60.0, metadata={"help": "after a resolve, the same key cannot open a new alert for this long"}
    )
    update_growth: NonNegativeFloat = field(
        default=0.5,
        metadata={"help": "an update is sent when distinct reporters grew by this fraction since the last event"},
    )
    update_min_delta: PositiveInt = field(
        default=2, metadata={"help": "... and by at least this many reporters (small counts do not flap updates)"}
    )
    inhibit: bool = field(
        default=True,
        metadata={
            "help": "fold ticker and overall alerts into open broker alerts of every broker their reports name"
        },
    )
    max_samples: Annotated[int, Field(ge=1, le=10)] = field(default=5, metadata={"help": "sample posts shown in a message (3 to 5 is readable)"})
    sample_chars: Annotated[int, Field(ge=20, le=100_000)] = field(default=280, metadata={"help": "characters of each sample post kept for the message"})
    dashboard_url: str = field(
        default="", metadata={"help": "base URL of the dashboard, linked from every message (empty = no link)"}
    )
    display_utc_offset_hours: UtcOffsetHours = field(
        default=9.0, metadata={"help": "offset used to show times in messages (JST = 9)"}
    )
    max_attempts: PositiveInt = field(
        default=8, metadata={"help": "delivery attempts of one notification before it is marked dead"}
    )
    backoff_seconds: PositiveFloat = field(
        default=30.0, metadata={"help": "first retry delay after a failed delivery; doubles per attempt"}
    )
    max_backoff_seconds: PositiveFloat = field(default=3600.0, metadata={"help": "longest delay between delivery retries"})
    source_silence_minutes: NonNegativeFloat = field(
        default=30.0,
        metadata={"help": "`run` opens an alert of its own (source:NAME) when a source it runs has had no "
                          "successful collection for this long, and resolves it when the source succeeds "
                          "again (0 = never)"},
    )
    claim_seconds: PositiveFloat = field(
        default=300.0,
        metadata={"help": "an item being sent is held this long, so a second worker never sends it at once"},
    )

    def __post_init__(self) -> None:
        problems = []
        for name in ("group_wait_minutes", "repeat_interval_minutes", "resolve_after_minutes", "cooldown_minutes"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0")
        if self.repeat_interval_minutes <= 0:
            problems.append("repeat_interval_minutes must be > 0")
        if self.update_growth < 0 or self.update_min_delta < 1:
            problems.append("update_growth must be >= 0 and update_min_delta >= 1")
        if not 1 <= self.max_samples <= 10:
            problems.append("max_samples must be between 1 and 10")
        if self.sample_chars < 20:
            problems.append("sample_chars must be >= 20")
        if self.max_attempts < 1:
            problems.append("max_attempts must be >= 1")
        if self.backoff_seconds <= 0 or self.max_backoff_seconds < self.backoff_seconds:
            problems.append("backoff_seconds must be > 0 and max_backoff_seconds >= backoff_seconds")
        if self.claim_seconds <= 0:
            problems.append("claim_seconds must be > 0")
        if self.dashboard_url and not self.dashboard_url.startswith(("http://", "https://")):
            problems.append("dashboard_url must start with http:// or https://")
        if problems:
            raise ConfigError("[alerts] " + "; ".join(problems))

    @property
    def group_wait(self) -> timedelta:
        return timedelta(minutes=self.group_wait_minutes)

    @property
    def repeat_interval(self) -> timedelta:
        return timedelta(minutes=self.repeat_interval_minutes)

    @property
    def resolve_after(self) -> timedelta:
        return timedelta(minutes=self.resolve_after_minutes)

    @property
    def cooldown(self) -> timedelta:
        return timedelta(minutes=self.cooldown_minutes)


@dataclass(frozen=True)
class SlackConfig:
    """Where Slack messages go: an incoming webhook, or a bot token with channels (threads and edits)."""

    webhook_url: Secret | None = field(
        default=None,
        metadata={"help": "incoming-webhook URL (one channel, no threads)", "env": "SLACK_WEBHOOK_URL", "secret": True},
    )
    bot_token: Secret | None = field(
        default=None,
        metadata={"help": "bot token (xoxb-...) for chat.postMessage, thread replies and chat.update; "
                          "preferred over the webhook when both are set",
                  "env": "SLACK_BOT_TOKEN", "secret": True},
    )
    channel: str = field(
        default="", metadata={"help": "default channel id or name for the bot token", "env": "SLACK_CHANNEL"}
    )
    routes: dict[str, str] = field(
        default_factory=dict,
        metadata={"help": "broker -> channel for broker alerts, e.g. { \"楽天証券\" = \"C0123\" }; others use channel"},
    )
    api_url: HttpUrl = field(
        default="https://slack.com/api/",
        metadata={"help": "Web API base URL (gateways, proxies, tests)", "env": "SLACK_API_URL"},
    )
    timeout_seconds: PositiveFloat = field(default=10.0, metadata={"help": "HTTP timeout of one Slack request"})
    max_retry_wait_seconds: NonNegativeFloat = field(
        default=5.0,
        metadata={"help": "a 429 asking to wait up to this long is waited out in place; longer waits are "
                          "left to the next delivery attempt"},
    )
    open_mention: str = field(
        default="", metadata={"help": "text put before an opening alert, e.g. \"<!here>\" (empty = none)"}
    )

    def __post_init__(self) -> None:
        if self.timeout_seconds <= 0 or self.max_retry_wait_seconds < 0:
            raise ConfigError("[slack] timeout_seconds must be > 0 and max_retry_wait_seconds >= 0")
        if not self.api_url.startswith(("http://", "https://")):
            raise ConfigError(f"[slack] api_url {self.api_url!r} must start with http:// or https:// (SLACK_API_URL)")
        if self.webhook_url and not str.__str__(self.webhook_url).startswith(("http://", "https://")):
            raise ConfigError("SLACK_WEBHOOK_URL is not a URL: copy the whole https://hooks.slack.com/... address")
        for broker in self.routes:
            if broker not in BROKERS:  # a misspelt route would never match and its alerts go elsewhere
                near = difflib.get_close_matches(broker, BROKERS, n=1, cutoff=0.4)
                hint = f"did you mean {near[0]!r}?" if near else "use a canonical name of nlp/data/brokers.json"
                raise ConfigError(f"[slack] routes: {broker!r} is not a broker name: {hint}")

    @property
    def enabled(self) -> bool:
        return bool(self.webhook_url or self.bot_token)

    def channel_for(self, kind: str, key: str) -> str:
        """The channel of an alert: a broker's route if one is set, else the default channel.

        >>> SlackConfig(channel="C-all", routes={"楽天証券": "C-rakuten"}).channel_for("broker", "楽天証券")
        'C-rakuten'
        >>> SlackConfig(channel="C-all", routes={"楽天証券": "C-rakuten"}).channel_for("ticker", "2269.HK")
        'C-all'
        """
        if kind == "broker" and key in self.routes:
            return self.routes[key]
        return self.channel
