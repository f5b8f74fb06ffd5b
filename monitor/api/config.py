"""Settings of `serve` (the ``[api]`` section). Importing this module needs no web framework."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ApiConfig:
    host: str = field(default="127.0.0.1", metadata={"help": "address `serve` listens on (0.0.0.0 = every interface)"})
    port: int = field(default=8080, metadata={"help": "port `serve` listens on"})
    page_size: int = field(default=50, metadata={"help": "posts per page of /api/posts when no limit is given"})
    max_page_size: int = field(default=200, metadata={"help": "largest limit /api/posts accepts (larger is a 422)"})
    query_timeout_ms: int = field(
        default=5000,
        metadata={"help": "longest one API request may spend in the database before it is cut off with a 503"},
    )
    tokens: str | None = field(
        default=None,
        metadata={"help": "bearer tokens accepted by /api/ routes, comma-separated", "env": "MONITOR_API_TOKENS",
                  "secret": True},
    )

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.page_size <= self.max_page_size:
            problems.append("page_size must be between 1 and max_page_size")
        if self.query_timeout_ms < 10:
            problems.append("query_timeout_ms must be at least 10")
        if problems:
            raise ValueError("; ".join(problems))

    def token_list(self) -> list[bytes]:
        raw = self.tokens.reveal() if hasattr(self.tokens, "reveal") else (self.tokens or "")  # type: ignore[union-attr]
        return [t.strip().encode("utf-8") for t in raw.split(",") if t.strip()]
