"""One settings object, built from ``incident-monitor.toml`` plus the environment, validated by pydantic.

Each area declares its settings as a frozen dataclass in its own package (detector, alerts, collectors) and
names it in :data:`SECTIONS`; this module derives a strict pydantic model from each dataclass and validates
the TOML file's tables with the environment's values laid over them through one root model of those.
Every field has a default, a help text (``metadata={"help": ...}``) and a type with a range where it is a
number (the aliases below: :data:`PositiveInt`, :data:`NonNegativeFloat` ...); TOML values must have the
field's type (``seasonal = "yes"`` is an error, not true). Fields with ``metadata={"env": "VAR"}`` are read
from that environment variable or from the file named by ``VAR_FILE``; fields that also say
``"secret": True`` are never accepted from the TOML file and are held as :class:`Secret`, whose repr hides
the value, so a secret can reach neither a log line nor the database by accident.

Every problem is one :class:`~monitor.errors.ConfigError` line naming the file, line and key (or the
environment variable) and the fix, with "did you mean ..." for a misspelt key or section.

To add a setting: add a field to the area's dataclass with a constrained type, a default and a help text.
To add a section: write the dataclass and add ``"name": "module:Class"`` to :data:`SECTIONS`.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import math
import os
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError, create_model
from pydantic_core import core_schema

from monitor.errors import ConfigError

CONFIG_ENV = "INCIDENT_MONITOR_CONFIG"
DEFAULT_CONFIG_NAME = "incident-monitor.toml"

# Constrained types for settings: every number has a range, and no float is NaN or infinite.
# The upper bound keeps every duration inside what datetime arithmetic can hold.
BIG = 1_000_000_000
PositiveInt = Annotated[int, Field(gt=0, le=BIG)]
NonNegativeInt = Annotated[int, Field(ge=0, le=BIG)]
PositiveFloat = Annotated[float, Field(gt=0, le=BIG, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0, le=BIG, allow_inf_nan=False)]
Fraction = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
UtcOffsetHours = Annotated[float, Field(ge=-14, le=14, allow_inf_nan=False)]
HttpUrl = Annotated[str, Field(pattern=r"^https?://\S+$")]
WebSocketUrl = Annotated[str, Field(pattern=r"^wss?://\S+$")]


class Secret(str):
    """A string whose repr and str in f-strings of containers never show the value."""

    def __repr__(self) -> str:
        return "Secret('***')"

    def reveal(self) -> str:
        return str.__str__(self)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(cls, core_schema.str_schema(strict=True))


def read_secret(variable: str, env: typing.Mapping[str, str] | None = None) -> Secret | None:
    """A secret from ``VARIABLE`` or from the file named by ``VARIABLE_FILE`` (Docker/K8s secrets)."""
    env = os.environ if env is None else env
    value = env.get(variable)
    if value:
        return Secret(value.strip())
    path = env.get(f"{variable}_FILE")
    if path:
        try:
            return Secret(Path(path).read_text(encoding="utf-8").strip())
        except OSError as exc:
            raise ConfigError(f"{variable}_FILE={path}: cannot read it ({exc.strerror}); point it at a readable file") from exc
    return None


@dataclass(frozen=True)
class StorageConfig:
    database_url: Secret | None = field(
        default=None,
        metadata={"help": "SQLAlchemy URL of the store; default a SQLite file in the user data directory",
                  "env": "DATABASE_URL", "secret": True},
    )


@dataclass(frozen=True)
class PipelineConfig:
    cycle_seconds: PositiveInt = field(default=60, metadata={"help": "how often the analyze -> detect -> alert cycle runs (live)"})
    replay_step_seconds: PositiveInt = field(default=300, metadata={"help": "simulated-clock step of replay between cycles"})
    analyze_batch: PositiveInt = field(default=256, metadata={"help": "posts classified per batch"})


@dataclass(frozen=True)
class NLPConfig:
    model: str | None = field(default=None, metadata={"help": "classifier directory or model id; default the bundled model"})
    securities_files: tuple[str, ...] = field(
        default=(),
        metadata={"help": "official listed-company files to load beside the bundled securities master "
                          "(JPX data_j.xls, the EDINET code list CSV, HK/Shanghai/Shenzhen lists), so every "
                          "listed code is recognised"},
    )
    onnx_threads: NonNegativeInt = field(
        default=0, metadata={"help": "CPU threads of the ONNX classifier (0 = onnxruntime decides)", "env": "NLP_ONNX_THREADS"}
    )


# Sections declared elsewhere are imported when settings load; a section that cannot be imported is a broken
# install and fails loudly rather than vanishing from the settings.
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
    "retention": "monitor.retention:RetentionConfig",
    "api": "monitor.api.config:ApiConfig",
    "metrics": "monitor.metrics_config:MetricsConfig",
}


def section_class(name: str) -> type:
    target = SECTIONS[name]
    if isinstance(target, type):
        return target
    module_name, _, attr = target.partition(":")
    try:
        return typing.cast(type, getattr(importlib.import_module(module_name), attr))
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"settings section [{name}] cannot be loaded from {target} ({exc}): the install is broken; "
            "reinstall with `pip install -e .`"
        ) from exc


def available_sections() -> dict[str, type]:
    """Every section's dataclass (all of them: a broken one is an error, see :func:`section_class`)."""
    return {name: section_class(name) for name in SECTIONS}


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def _origin(hint: Any) -> Any:
    """The plain type under ``Annotated`` and ``X | None``: int, float, bool, str, tuple, dict, Secret."""
    while typing.get_origin(hint) is Annotated:
        hint = typing.get_args(hint)[0]
    if typing.get_origin(hint) in (typing.Union, type(int | None)):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
        return _origin(hint)
    return typing.get_origin(hint) or hint


def _listed(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def section_model(cls: type) -> type[BaseModel]:
    """A strict pydantic model with the fields, types and defaults of a section dataclass."""
    fields: dict[str, Any] = {}
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        hint = Secret | None if f.metadata.get("secret") else hints[f.name]
        if _origin(hint) is tuple:  # TOML has arrays, not tuples
            hint = Annotated[hint, BeforeValidator(_listed)]
        if f.default is not dataclasses.MISSING:
            fields[f.name] = (hint, f.default)
        else:
            fields[f.name] = (hint, Field(default_factory=f.default_factory))  # type: ignore[arg-type]
    config = ConfigDict(strict=True, extra="forbid", arbitrary_types_allowed=True)
    return create_model(f"{cls.__name__}Model", __config__=config, **fields)  # type: ignore[call-overload, no-any-return]


def _env_value(raw: str, hint: Any, where: str) -> Any:
    """An environment string as the field's type (environment values are text, so conversion is lax)."""
    kind = _origin(hint)
    if kind is Secret:
        return Secret(raw.strip())
    value: Any = raw
    if kind is tuple:
        value = [v.strip() for v in raw.split(",") if v.strip()]
    try:
        return TypeAdapter(hint).validate_python(value)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {_problem(exc.errors(include_url=False)[0])}") from None


def _environment_values(sections: dict[str, type], env: typing.Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """The fields that name an environment variable, from ``VAR`` or the file named by ``VAR_FILE``."""
    out: dict[str, dict[str, Any]] = {}
    for name, cls in sections.items():
        hints = _hints(cls)
        for f in dataclasses.fields(cls):
            var = f.metadata.get("env")
            if not var:
                continue
            if f.metadata.get("secret"):
                secret = read_secret(var, env)
                if secret is not None:
                    out.setdefault(name, {})[f.name] = secret
            elif env.get(var):
                out.setdefault(name, {})[f.name] = _env_value(env[var], hints[f.name], f"{var} (environment)")
    return out


def _laid_over(data: dict[str, Any], environment: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The TOML tables with the environment's values laid over them (the environment wins, key by key; a
    section that is not a table in the file is replaced, and its validation then names the variable's value)."""
    merged = dict(data)
    for name, values in environment.items():
        table = merged.get(name)
        merged[name] = {**table, **values} if isinstance(table, dict) else values
    return merged


_ROOT_CONFIG = ConfigDict(extra="forbid", validate_default=True)


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
        if not p.is_file():
            what = "is a directory, not a file" if p.is_dir() else "not found"
            raise ConfigError(f"config file {p} {what}: create one with `incident-monitor init`")
        return p
    if os.environ.get(CONFIG_ENV):
        return find_config(os.environ[CONFIG_ENV])
    local = Path.cwd() / DEFAULT_CONFIG_NAME
    return local if local.is_file() else None


class _Where:
    """Names where a setting came from: ``file:line: [section] key``, or the environment variable."""

    def __init__(self, path: Path | None, text: str, sections: dict[str, type], env: typing.Mapping[str, str]):
        self.path, self.lines, self.sections, self.env = path, text.splitlines(), sections, env

    def line(self, section: str, key: str | None = None) -> int | None:
        current = None
        for number, line in enumerate(self.lines, 1):
            stripped = line.strip()
            header = re.match(r"^\[\s*([^\]\s]+)\s*\]", stripped)
            if header:
                current = header.group(1).strip("\"'")
                if key is None and current == section:
                    return number
            elif current == section and key is not None and re.match(rf"^[\"']?{re.escape(key)}[\"']?\s*=", stripped):
                return number
        return None

    def __call__(self, section: str, key: str | None = None) -> str:
        cls = self.sections.get(section)
        if key is not None and cls is not None:
            meta: typing.Mapping[str, Any] = next((f.metadata for f in dataclasses.fields(cls) if f.name == key), {})
            var = meta.get("env")
            if var and (self.env.get(var) or self.env.get(f"{var}_FILE")):
                return f"{var} (environment)" if self.env.get(var) else f"{var}_FILE (environment)"
        name = f"[{section}]" + (f" {key}" if key else "")
        if self.path is None:
            return name
        number = self.line(section, key)
        return f"{self.path}:{number}: {name}" if number else f"{self.path}: {name}"


def _problem(err: Any) -> str:
    """A pydantic error as a short clause: 'must be greater than 0', 'must be true or false' ..."""
    kind = err["type"]
    plain = {"bool_type": "must be true or false", "int_type": "must be a whole number",
             "float_type": "must be a number", "string_type": "must be a string", "tuple_type": "must be a list",
             "dict_type": "must be a table", "finite_number": "must be a finite number (not nan or inf)",
             "string_pattern_mismatch": "must be a URL of the form it names (http://, https://, ws:// or wss://)"}
    if kind in plain:
        text = plain[kind]
    elif kind == "value_error":
        text = str(err["ctx"]["error"])
    else:
        text = err["msg"].replace("Input should be", "must be")
    value = err.get("input")
    if kind != "missing" and not isinstance(value, dict | Secret):
        shown = repr(value)
        text += f", got {shown if len(shown) <= 40 else shown[:37] + '...'}"
    return text


def _explain(exc: ValidationError, where: _Where) -> ConfigError:
    err = exc.errors(include_url=False)[0]
    loc = [str(p) for p in err["loc"]]
    section = loc[0]
    if len(loc) == 1 and err["type"] == "extra_forbidden":
        near = difflib.get_close_matches(section, list(where.sections), n=1)
        hint = f"did you mean [{near[0]}]?" if near else f"known sections are {', '.join(where.sections)}"
        return ConfigError(f"{where(section)}: unknown section [{section}]: {hint}")
    if len(loc) == 1:
        return ConfigError(f"{where(section)}: [{section}] must be a table of settings, e.g. [{section}] on its own line")
    key = loc[1]
    if err["type"] == "extra_forbidden":
        known = [f.name for f in dataclasses.fields(where.sections[section])]
        near = difflib.get_close_matches(key, known, n=1)
        hint = f"did you mean {near[0]!r}?" if near else f"known settings are {', '.join(known)}"
        return ConfigError(f"{where(section, key)}: unknown setting {key!r}: {hint}")
    item = f" item {loc[2]}" if len(loc) > 2 else ""
    return ConfigError(f"{where(section, key)}{item} {_problem(err)}")


def load_settings(path: str | Path | None = None, env: typing.Mapping[str, str] | None = None) -> Settings:
    """Settings from the TOML file (if any) and the environment; unknown sections or keys are errors."""
    env = os.environ if env is None else env
    config_path = find_config(path)
    text = ""
    data: dict[str, Any] = {}
    if config_path is not None:
        try:
            text = config_path.read_text(encoding="utf-8")
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{config_path}: not valid TOML ({exc}); fix the line it names") from exc
        except UnicodeDecodeError:
            raise ConfigError(f"{config_path}: not UTF-8 text; save it as UTF-8") from None
        except OSError as exc:
            raise ConfigError(f"{config_path}: cannot read it ({exc.strerror})") from None
    sections = available_sections()
    where = _Where(config_path, text, sections, env)
    for name, table in data.items():
        for f in dataclasses.fields(sections[name]) if name in sections and isinstance(table, dict) else ():
            if f.metadata.get("secret") and f.name in table:
                raise ConfigError(
                    f"{_Where(config_path, text, {}, {})(name, f.name)} is a secret and is not read from the config "
                    f"file: delete it there and set {f.metadata.get('env', 'its environment variable')} instead"
                )
    models = {name: section_model(cls) for name, cls in sections.items()}
    root = create_model(  # type: ignore[call-overload]
        "IncidentMonitorSettings",
        __config__=_ROOT_CONFIG,
        **{name: (model, Field(default_factory=model)) for name, model in models.items()},
    )
    try:
        loaded = root.model_validate(_laid_over(data, _environment_values(sections, env)))
    except ValidationError as exc:
        raise _explain(exc, where) from None
    built = {}
    for name, cls in sections.items():
        values = dict(getattr(loaded, name))
        try:
            built[name] = cls(**values)
        except ConfigError as exc:
            raise ConfigError(f"{config_path}: {exc}" if config_path else str(exc)) from None
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise ConfigError(f"{where(name)}: {exc}") from None
    return Settings(built, config_path)


def render_default_config() -> str:
    """A commented TOML file with every setting at its default (what `init` writes).

    Help lines start with ``##`` and settings with ``#``: uncommenting any setting line (or all of them)
    gives a valid file with the same settings; a setting with no default value (unset) has no line to
    uncomment, only its help.
    """
    lines = [
        "## incident-monitor configuration. Uncomment a setting (delete its leading '# ') to change it.",
        "## Secrets are never read from this file: set them in the environment (or VAR_FILE pointing at a",
        "## file): DATABASE_URL, X_BEARER_TOKEN, REDDIT_CLIENT_ID, REDDIT_CLIENT_SECRET, REDDIT_USER_AGENT,",
        "## BLUESKY_HANDLE, BLUESKY_APP_PASSWORD, SLACK_WEBHOOK_URL, SLACK_BOT_TOKEN, SLACK_CHANNEL,",
        "## MONITOR_API_TOKENS, MONITOR_PSEUDONYM_KEY.",
        "",
    ]
    for name, cls in available_sections().items():
        lines.append(f"[{name}]")
        for f in dataclasses.fields(cls):
            meta = f.metadata
            help_text = meta.get("help", "")
            env_note = f" (env {meta['env']})" if meta.get("env") else ""
            lines.append(f"## {help_text}{env_note}")
            if meta.get("secret"):
                lines.append(f"## {f.name}: secret, from the environment only")
                continue
            default = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
            if default is None:
                lines.append(f"## {f.name}: unset by default")
                continue
            lines.append(f"# {f.name} = {_toml_value(default)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f'"{k}" = {_toml_value(v)}' for k, v in value.items()) + " }"
    return repr(value)
