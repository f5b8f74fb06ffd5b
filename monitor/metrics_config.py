"""The ``[metrics]`` settings section, apart from :mod:`monitor.metrics`: loading settings imports every
section's module, and every command (an export too) would otherwise import prometheus-client with it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from pydantic import Field

MetricsPort = Annotated[int, Field(ge=0, le=65535)]  # 0 = off


@dataclass(frozen=True)
class MetricsConfig:
    """Where `run` serves Prometheus metrics (`serve` always has them at /metrics)."""

    port: MetricsPort = field(
        default=0,
        metadata={"help": "port on which `run` serves Prometheus metrics at /metrics (0 = off)",
                  "env": "MONITOR_METRICS_PORT"},
    )
    host: str = field(
        default="127.0.0.1",
        metadata={"help": "address the metrics port listens on (0.0.0.0 in a container, so Prometheus can reach it)",
                  "env": "MONITOR_METRICS_HOST"},
    )

    def __post_init__(self) -> None:
        if not self.host.strip():
            raise ValueError("[metrics] host must not be empty (127.0.0.1 = this machine only)")
