"""One settings object, built from ``incident-monitor.toml`` plus the environment.

Each area declares its settings as a frozen dataclass in its own package (detector, alerts, collectors);
this module names them as TOML sections and fills them. Every field has a default and a help text
(``metadata={"help": ...}``). Fields with ``metadata={"env": "VAR"}`` are read from that environment
variable (or from the file named by ``VAR_FILE``); fields that also say ``"secret": True`` are never
accepted from the TOML file and are held as :class:`Secret`, whose repr hides the value, so a secret can
reach neither a log line nor the database by accident.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monitor.errors import ConfigError

CONFIG_ENV = "INCIDENT_MONITOR_CONFIG"
DEFAULT_CONFIG_NAME = "incident-monitor.toml"


class Secret(str):
    """A string whose repr and str in f-strings of containers never show the value."""

    def __repr__(self) -> str:
        return "Secret('***')"

    def reveal(self) -> str:
        return str.__str__(self)


def read_secret(variable: str) -> Secret | None:
    """A secret from ``VARIABLE`` or from the file named by ``VARIABLE_FILE`` (Docker/K8s secrets)."""
    value = os.environ.get(variable)
    if value:
        return Secret(value.strip())
    path = os.environ.get(f"{variable}_FILE")
    if path:
        try:
            return Secret(Path(path).read_text(encoding="utf-8").strip())
        except OSError as exc:
            raise ConfigError(f"{variable}_FILE={path}: cannot read it ({exc.strerror}); point it at a readable file") from exc
    return None


@dataclass(frozen=True)
class StorageConfig:
    database_url: str | None = field(
        default=None,
        metadata={"help": "SQLAlchemy URL of the store; default a SQLite file in the user data directory",
                  "env": "DATABASE_URL", "secret": True},
    )


@dataclass(frozen=True)
class PipelineConfig:
    cycle_seconds: int = field(default=60, metadata={"help": "how often the analyze -> detect -> alert cycle runs (live)"})
    replay_step_seconds: int = field(default=300, metadata={"help": "simulated-clock step of replay between cycles"})
    analyze_batch: int = field(default=256, metadata={"help": "posts classified per batch"})


@dataclass(frozen=True)
class NLPConfig:
    model: str | None = field(default=None, metadata={"help": "classifier directory or model id; default the bundled model"})
    securities_files: tuple[str, ...] = field(
        default=(),
        metadata={"help": "official listed-company files to load beside the bundled securities master "
                          "(JPX data_j.xls, the EDINET code list CSV, HK/Shanghai/Shenzhen lists), so every "
                          "listed code is recognised"},
    )


# Sections declared elsewhere, imported lazily so a broken optional area cannot stop `--help`.
SECTIONS: dict[str, str | type] = {
    "storage": StorageConfig,
    "pipeline": PipelineConfig,
    "nlp": NLPConfig,
    "detect": "monitor.detect.config:DetectConfig",
    "alerts": "monitor.alerts.config:AlertsConfig",
    "slack": "monitor.alerts.config:SlackConfig",
    "x": "monitor.collectors.config:XConfig",
    "reddit": "monitor.collectors.config:RedditConfig",
    "bluesky": "monitor.collectors.config:BlueskyConfig",
    "scheduler": "monitor.collectors.config:SchedulerConfig",
    "api": "monitor.api.config:ApiConfig",
}


def section_class(name: str) -> type:
    target = SECTIONS[name]
    if isinstance(target, type):
        return target
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def available_sections() -> dict[str, type]:
    """The sections whose modules exist in this install."""
    found: dict[str, type] = {}
    for name in SECTIONS:
        try:
            found[name] = section_class(name)
        except (ImportError, AttributeError):
            continue
    return found


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        return _coerce(value, non_none[0], where) if len(non_none) == 1 else value
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where} must be an integer, got {value!r}") from None
    if hint is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where} must be a number, got {value!r}") from None
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        item = args[0] if args else Any
        items = [_coerce(v, item, f"{where}[{i}]") if item is not Any else v for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a table, got {value!r}")
        return dict(value)
    return value


def build_section(cls: type, name: str, table: dict[str, Any], env: typing.Mapping[str, str]) -> Any:
    """Fill one section dataclass from its TOML table and the environment."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise ConfigError(
            f"[{name}] has unknown setting(s) {', '.join(unknown)}: known are {', '.join(sorted(fields))}"
        )
    values: dict[str, Any] = {}
    for fname, f in fields.items():
        meta = f.metadata
        where = f"[{name}].{fname}"
        if meta.get("secret") and fname in table:
            raise ConfigError(
                f"{where} is a secret and is not read from the config file: set {meta.get('env', 'its environment variable')} instead"
            )
        if fname in table:
            values[fname] = _coerce(table[fname], hints[fname], where)
        var = meta.get("env")
        if var:
            if meta.get("secret"):
                secret = read_secret(var) if env is os.environ else (Secret(env[var]) if env.get(var) else None)
                if secret is not None:
                    values[fname] = secret
            elif env.get(var):
                values[fname] = _coerce(env[var], hints[fname], f"{var} (environment)")
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[{name}]: {exc}") from exc


@dataclass(frozen=True)
class Settings:
    sections: dict[str, Any]
    path: Path | None = None

    def __getattr__(self, name: str) -> Any:
        try:
            return self.sections[name]
        except KeyError:
            raise AttributeError(name) from None


def find_config(path: str | Path | None = None) -> Path | None:
    if path:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"config file {p} not found: create one with `incident-monitor init`")
        return p
    if os.environ.get(CONFIG_ENV):
        return find_config(os.environ[CONFIG_ENV])
    local = Path.cwd() / DEFAULT_CONFIG_NAME
    return local if local.exists() else None


def load_settings(path: str | Path | None = None, env: typing.Mapping[str, str] | None = None) -> Settings:
    """Settings from the TOML file (if any) and the environment; unknown sections or keys are errors."""
    env = os.environ if env is None else env
    config_path = find_config(path)
    data: dict[str, Any] = {}
    if config_path is not None:
        try:
            data = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{config_path}: not valid TOML ({exc}); fix the line it names") from exc
        except UnicodeDecodeError:
            raise ConfigError(f"{config_path}: not UTF-8 text; save it as UTF-8") from None
    sections = available_sections()
    unknown = sorted(set(data) - set(sections))
    if unknown:
        raise ConfigError(f"{config_path}: unknown section(s) [{'], ['.join(unknown)}]: known are {', '.join(sections)}")
    built = {}
    for name, cls in sections.items():
        table = data.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{config_path}: [{name}] must be a table")
        built[name] = build_section(cls, name, table, env)
    return Settings(built, config_path)


def render_default_config() -> str:
    """A commented TOML file with every setting at its default (what `init` writes)."""
    lines = [
        "# incident-monitor configuration. Secrets are never read from this file: set them in the",
        "# environment (or VAR_FILE pointing at a file): DATABASE_URL, X_BEARER_TOKEN, REDDIT_CLIENT_ID,",
        "# REDDIT_CLIENT_SECRET, REDDIT_USER_AGENT, BLUESKY_HANDLE, BLUESKY_APP_PASSWORD, SLACK_WEBHOOK_URL,",
        "# SLACK_BOT_TOKEN, SLACK_CHANNEL, MONITOR_API_TOKENS, MONITOR_PSEUDONYM_KEY.",
        "",
    ]
    for name, cls in available_sections().items():
        lines.append(f"[{name}]")
        for f in dataclasses.fields(cls):
            meta = f.metadata
            help_text = meta.get("help", "")
            env_note = f" (env {meta['env']})" if meta.get("env") else ""
            lines.append(f"# {help_text}{env_note}")
            if meta.get("secret"):
                lines.append(f"# {f.name}: secret, from the environment only")
                continue
            default = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else None)  # type: ignore[misc]
            lines.append(f"# {f.name} = {_toml_value(default)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if value is None:
        return '""  # unset'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f'"{k}" = {_toml_value(v)}' for k, v in value.items()) + " }"
    return repr(value)
