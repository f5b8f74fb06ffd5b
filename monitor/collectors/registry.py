"""Which collectors run: every enabled source whose credentials are present.

A source with missing credentials is left out with ONE line naming the variable; the others still run.
Modules of sources are imported lazily, so a broken optional client library disables only its source.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from monitor.collectors.base import Collector
from monitor.collectors.retry import RetryPolicy
from monitor.errors import ConfigError, CredentialsError

log = logging.getLogger(__name__)

# source name -> (settings section, "module:class")
SOURCES: dict[str, tuple[str, str]] = {
    "x": ("x", "monitor.collectors.x:XCollector"),
    "reddit": ("reddit", "monitor.collectors.reddit:RedditCollector"),
    "bluesky": ("bluesky", "monitor.collectors.bluesky:BlueskyCollector"),
}


def build_collector(source: str, settings: Any, policy: RetryPolicy | None = None) -> Collector:
    """One source's collector; raises CredentialsError / ConfigError with the one line to show."""
    if source not in SOURCES:
        raise ConfigError(f"unknown source {source!r}: use one of {', '.join(SOURCES)}")
    section, target = SOURCES[source]
    module_name, _, cls_name = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
    except ImportError as exc:
        if getattr(exc, "name", None) == module_name:
            raise ConfigError(f"{source}: this build has no {source} collector yet; set [{section}] enabled = false") from exc
        raise ConfigError(f"{source}: its client library cannot be imported ({exc}); reinstall with `pip install -e .`") from exc
    policy = policy or RetryPolicy.from_config(settings.scheduler)
    return cls(getattr(settings, section), policy)


def build_collectors(settings: Any, policy: RetryPolicy | None = None) -> tuple[list[Collector], dict[str, str]]:
    """(collectors to run, {source: why it is disabled}) for every source in the settings."""
    collectors: list[Collector] = []
    disabled: dict[str, str] = {}
    for source, (section, _) in SOURCES.items():
        cfg = getattr(settings, section, None)
        if cfg is None or not getattr(cfg, "enabled", False):
            disabled[source] = f"{source}: disabled in the config ([{section}] enabled = false)"
            continue
        try:
            collectors.append(build_collector(source, settings, policy))
        except (CredentialsError, ConfigError) as exc:
            disabled[source] = f"{source} disabled: {exc}"
    return collectors, disabled
