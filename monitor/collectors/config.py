"""Settings of the collectors and the scheduler: one frozen dataclass per TOML section.

``monitor.settings`` fills these from ``[x]``, ``[reddit]``, ``[bluesky]`` and ``[scheduler]`` plus the
environment. Secrets (``"secret": True``) come only from the environment or ``VAR_FILE``; service base
URLs can be overridden from the environment so a gateway, a proxy or a test server can stand in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from pydantic import Field

from monitor.settings import (
    HttpUrl,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Secret,
    WebSocketUrl,
)
from nlp.entities import broker_search_terms

# Every spelling the broker lexicon (nlp/data/brokers.json) knows, as the fewest search words: a search
# query has to match what is written, and "楽天証券" alone misses "楽天で勝手に売られた".
DEFAULT_BROKER_TERMS: tuple[str, ...] = broker_search_terms()
DEFAULT_INCIDENT_TERMS: tuple[str, ...] = (
    "不正ログイン", "不正アクセス", "乗っ取り", "乗っ取られ", "勝手に", "身に覚えのない", "知らない取引",
    "中国株", "売却された", "買われた", "不正取引", "フィッシング",
)


@dataclass(frozen=True)
class XConfig:
    """X (Twitter) API v2 recent search, paid per post read."""

    enabled: bool = field(default=True, metadata={"help": "collect from X when X_BEARER_TOKEN is set"})
    bearer_token: Secret | None = field(
        default=None, metadata={"help": "app-only bearer token of the X API", "env": "X_BEARER_TOKEN", "secret": True}
    )
    api_base_url: HttpUrl = field(
        default="https://api.x.com",
        metadata={"help": "X API host (gateways, tests); paths /2/... are appended", "env": "X_API_BASE_URL"},
    )
    brokers: tuple[str, ...] = field(default=DEFAULT_BROKER_TERMS, metadata={"help": "broker names searched for"})
    incident_terms: tuple[str, ...] = field(
        default=DEFAULT_INCIDENT_TERMS, metadata={"help": "incident words; a post must contain a broker AND one of these"}
    )
    query_suffix: str = field(
        default="lang:ja -is:retweet",
        metadata={"help": "operators appended to every query (retweets carry no new reporter and cost money)"},
    )
    max_query_length: Annotated[int, Field(ge=32, le=4096)] = field(
        default=512, metadata={"help": "query length limit of your X access level; longer queries are split"}
    )
    max_results: Annotated[int, Field(ge=10, le=100)] = field(default=100, metadata={"help": "posts per search page (10-100)"})
    max_pages_per_pass: PositiveInt = field(default=10, metadata={"help": "search pages fetched per query per pass"})
    search_floor_seconds: NonNegativeInt = field(
        default=1800, metadata={"help": "run the full search at least this often even when counts do not move"}
    )
    daily_budget_usd: NonNegativeFloat = field(
        default=5.0, metadata={"help": "estimated X spend per UTC day after which searching pauses (0 = no searching)"}
    )
    cost_per_post_usd: NonNegativeFloat = field(
        default=0.005, metadata={"help": "estimated price of one post read; check your X developer console"}
    )
    cost_per_counts_request_usd: NonNegativeFloat = field(
        default=0.0, metadata={"help": "estimated price of one counts request"}
    )
    timeout_seconds: PositiveFloat = field(default=30.0, metadata={"help": "HTTP timeout of one X request"})


@dataclass(frozen=True)
class RedditConfig:
    """Reddit's read-only OAuth API over plain HTTP (approved API access required)."""

    enabled: bool = field(default=True, metadata={"help": "collect from Reddit when the REDDIT_* credentials are set"})
    client_id: Secret | None = field(
        default=None, metadata={"help": "OAuth client id", "env": "REDDIT_CLIENT_ID", "secret": True}
    )
    client_secret: Secret | None = field(
        default=None, metadata={"help": "OAuth client secret", "env": "REDDIT_CLIENT_SECRET", "secret": True}
    )
    user_agent: str = field(
        default="",
        metadata={"help": "descriptive User-Agent Reddit requires, e.g. 'incident-monitor/0.1 by u/you'",
                  "env": "REDDIT_USER_AGENT"},
    )
    oauth_url: HttpUrl = field(
        default="https://oauth.reddit.com", metadata={"help": "Reddit API host", "env": "REDDIT_OAUTH_URL"}
    )
    www_url: HttpUrl = field(
        default="https://www.reddit.com", metadata={"help": "Reddit token host", "env": "REDDIT_WWW_URL"}
    )
    subreddits: tuple[str, ...] = field(
        default=("JapanFinance", "japanlife", "newsokur"), metadata={"help": "subreddits whose new posts are read"}
    )
    search_queries: tuple[str, ...] = field(
        default=("楽天証券 不正", "SBI証券 不正", "証券口座 乗っ取り"),
        metadata={"help": "searches run across the configured subreddits"},
    )
    include_comments: bool = field(default=True, metadata={"help": "also read new comments of the subreddits"})
    limit: Annotated[int, Field(ge=1, le=100)] = field(default=100, metadata={"help": "items per listing request (Reddit allows 100)"})
    timeout_seconds: PositiveFloat = field(default=30.0, metadata={"help": "HTTP timeout of one Reddit request"})


@dataclass(frozen=True)
class BlueskyConfig:
    """Bluesky: the Jetstream firehose filtered locally, plus authenticated searchPosts for backfill."""

    enabled: bool = field(default=True, metadata={"help": "collect from Bluesky (Jetstream needs no account)"})
    jetstream_url: WebSocketUrl = field(
        default="wss://jetstream2.us-east.bsky.network/subscribe",
        metadata={"help": "Jetstream subscribe endpoint", "env": "JETSTREAM_URL"},
    )
    keywords: tuple[str, ...] = field(
        default=DEFAULT_BROKER_TERMS + ("証券口座", "不正ログイン", "乗っ取り"),
        metadata={"help": "a Japanese post is kept when it contains any of these"},
    )
    listen_seconds: PositiveFloat = field(
        default=50.0, metadata={"help": "how long one pass listens to Jetstream before saving and returning"}
    )
    handle: str = field(default="", metadata={"help": "account handle for searchPosts backfill", "env": "BLUESKY_HANDLE"})
    app_password: Secret | None = field(
        default=None, metadata={"help": "app password for searchPosts", "env": "BLUESKY_APP_PASSWORD", "secret": True}
    )
    api_url: HttpUrl = field(
        default="https://bsky.social/xrpc", metadata={"help": "XRPC base URL for login and searchPosts", "env": "BLUESKY_API_URL"}
    )
    search_queries: tuple[str, ...] = field(
        default=("楽天証券 不正", "SBI証券 乗っ取り", "証券口座 乗っ取り"), metadata={"help": "searchPosts backfill queries"}
    )
    search_limit: Annotated[int, Field(ge=1, le=100)] = field(default=100, metadata={"help": "posts per searchPosts page (1-100)"})
    max_search_pages: PositiveInt = field(default=5, metadata={"help": "searchPosts pages per query per pass"})


@dataclass(frozen=True)
class SchedulerConfig:
    """How the live bot schedules passes, retries and reports silence."""

    x_seconds: PositiveInt = field(default=120, metadata={"help": "interval of the X job (a counts poll; search when counts move)"})
    reddit_seconds: PositiveInt = field(default=300, metadata={"help": "interval of the Reddit job"})
    bluesky_seconds: PositiveInt = field(default=60, metadata={"help": "interval of the Bluesky job"})
    jitter_seconds: NonNegativeInt = field(default=10, metadata={"help": "random delay added to each run so sources do not fire together"})
    misfire_grace_seconds: PositiveInt = field(default=60, metadata={"help": "a run late by less than this still runs"})
    silent_after_minutes: PositiveInt = field(
        default=360, metadata={"help": "status warns when a source stored no new post for this long"}
    )
    retry_attempts: Annotated[int, Field(ge=1, le=100)] = field(default=5, metadata={"help": "tries of one request on 5xx, timeouts and resets"})
    retry_base_seconds: PositiveFloat = field(default=2.0, metadata={"help": "first backoff delay; doubles per try"})
    retry_max_seconds: PositiveFloat = field(default=120.0, metadata={"help": "longest single backoff delay"})
    max_rate_limit_wait_seconds: NonNegativeFloat = field(
        default=900.0, metadata={"help": "longest wait for a rate-limit reset; longer waits end the pass"}
    )
    shutdown_seconds: NonNegativeFloat = field(default=10.0, metadata={"help": "how long `run` waits for jobs on SIGTERM/SIGINT"})
