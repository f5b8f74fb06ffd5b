"""Settings of `serve` (the ``[api]`` section). Importing this module needs no web framework."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from pydantic import Field

from monitor.settings import PositiveInt

Port = Annotated[int, Field(ge=1, le=65535)]


@dataclass(frozen=True)
class ApiConfig:
    host: str = field(default="127.0.0.1", metadata={"help": "address `serve` listens on (0.0.0.0 = every interface)"})
    port: Port = field(default=8080, metadata={"help": "port `serve` listens on"})
    page_size: PositiveInt = field(default=50, metadata={"help": "posts per page of /api/posts when no limit is given"})
    max_page_size: PositiveInt = field(default=200, metadata={"help": "largest limit /api/posts accepts (larger is a 422)"})
    query_timeout_ms: Annotated[int, Field(ge=10, le=600_000)] = field(
        default=5000,
        metadata={"help": "longest one API request may spend in the database before it is cut off with a 503"},
    )
    tokens: str | None = field(
        default=None,
        metadata={"help": "bearer tokens accepted by /api/ routes, comma-separated", "env": "MONITOR_API_TOKENS",
                  "secret": True},
    )

    def __post_init__(self) -> None:
        if self.page_size > self.max_page_size:
            raise ValueError(f"page_size ({self.page_size}) must not exceed max_page_size ({self.max_page_size})")

    def token_list(self) -> list[bytes]:
        raw = self.tokens.reveal() if hasattr(self.tokens, "reveal") else (self.tokens or "")  # type: ignore[union-attr]
        return [t.strip().encode("utf-8") for t in raw.split(",") if t.strip()]
