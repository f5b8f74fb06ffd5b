"""docker-compose.yml stays consistent with the code (there is no Docker engine in CI, so this is its check):
every command parses with the real CLI parser, every variable is one the settings read (and secrets are
never written in the file), exactly one service runs the scheduler, the analyze workers use the
PostgreSQL service, and the health check is the Dockerfile's."""

from __future__ import annotations

import dataclasses
import re
import shlex

import pytest

from monitor.cli import build_parser
from monitor.settings import CONFIG_ENV, available_sections, load_settings
from tests.conftest import REPO

yaml = pytest.importorskip("yaml")

COMPOSE = REPO / "docker-compose.yml"
INTERPOLATION = re.compile(r"\$\{([A-Z][A-Z0-9_]*)(?::?[-?+][^}]*)?\}")


def _settings_env() -> tuple[set[str], set[str]]:
    """Every environment variable the settings read, and those that hold secrets."""
    names, secrets = set(), set()
    for cls in available_sections().values():
        for f in dataclasses.fields(cls):
            if f.metadata.get("env"):
                names.add(f.metadata["env"])
                if f.metadata.get("secret"):
                    secrets.add(f.metadata["env"])
    return names, secrets


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def _monitor_services(compose: dict) -> dict[str, dict]:
    found = {name: s for name, s in compose["services"].items() if "build" in s or "incident-monitor" in str(s.get("image"))}
    assert found, "no service runs the project's image"
    return found


def _args(service: dict):
    command = service["command"]
    assert isinstance(command, list), "exec form, as the Dockerfile's CMD"
    assert command[0] == "incident-monitor"
    try:
        return build_parser().parse_args(command[1:])
    except SystemExit as exc:
        raise AssertionError(f"{command} does not parse: exit {exc.code}") from None


def _replicas(service: dict) -> int:
    return int((service.get("deploy") or {}).get("replicas", 1))


def test_every_command_parses_with_the_cli(compose):
    for name, service in _monitor_services(compose).items():
        args = _args(service)
        assert getattr(args, "handler", None), f"{name}: {service['command']} names no runnable command"


def test_exactly_one_scheduler_and_two_analyze_workers(compose):
    services = _monitor_services(compose)
    runs = [(n, s) for n, s in services.items() if _args(s).command == "run"]
    assert len(runs) == 1 and _replicas(runs[0][1]) == 1, "one scheduler per deployment"
    workers = [s for s in services.values() if _args(s).command == "work" and _args(s).work_command == "analyze"]
    assert sum(_replicas(s) for s in workers) == 2


def test_every_variable_is_a_setting_and_no_secret_is_written(compose):
    known, secrets = _settings_env()
    known |= {CONFIG_ENV} | {f"{v}_FILE" for v in known}
    for name, service in _monitor_services(compose).items():
        env = service.get("environment") or {}
        assert isinstance(env, dict), f"{name}: environment as a mapping"
        for var, value in env.items():
            assert var in known, f"{name}: {var} is not read by monitor/settings.py"
            if var.startswith("MONITOR_"):
                assert var in known
            if var in secrets and var != "DATABASE_URL":
                assert value is None or INTERPOLATION.fullmatch(str(value)), f"{name}: {var} has a literal value"
        url = env.get("DATABASE_URL") or ""
        password = re.match(r"^[^:]+://[^:/@]*:([^@]*)@", url)
        assert password is None or INTERPOLATION.fullmatch(password.group(1)), f"{name}: literal database password"
        # the values parse as the settings they are (ports, hosts, URLs), ${...} filled in
        filled = {k: INTERPOLATION.sub("x", str(v)) for k, v in env.items() if v is not None}
        load_settings(env=filled)


def test_workers_and_scheduler_use_the_postgresql_service(compose):
    services = _monitor_services(compose)
    db = compose["services"]["db"]
    assert str(db["image"]).startswith("postgres")
    assert "healthcheck" in db
    user, database = db["environment"]["POSTGRES_USER"], db["environment"]["POSTGRES_DB"]
    for name, service in services.items():
        url = service["environment"]["DATABASE_URL"]
        assert re.fullmatch(rf"postgresql://{user}:\$\{{POSTGRES_PASSWORD[^}}]*\}}@db:5432/{database}", url), name
        assert service["depends_on"]["db"]["condition"] == "service_healthy", name


def test_the_health_check_is_the_dockerfiles(compose):
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    assert "ENTRYPOINT" not in text  # so a compose command is the whole argv, as the CMD is
    match = re.search(r"^HEALTHCHECK (.*?)\\\n\s+CMD (\[.*\])$", text, re.M)
    assert match, "the Dockerfile's HEALTHCHECK line"
    options = dict(re.findall(r"--([a-z-]+)=(\S+)", match.group(1)))
    command = yaml.safe_load(match.group(2))
    cmd_line = re.search(r"^CMD (\[.*\])$", text, re.M)
    assert cmd_line and yaml.safe_load(cmd_line.group(1))[0] == "incident-monitor"
    for name, service in _monitor_services(compose).items():
        check = service["healthcheck"]
        assert check["test"] == ["CMD", *command], name
        for key in ("interval", "timeout", "start-period", "retries"):
            assert str(check[key.replace("-", "_")]) == options[key], f"{name}: healthcheck {key}"
    assert shlex.join(command) == "incident-monitor status --check"


def test_the_metrics_port_is_published(compose):
    [scheduler] = [s for s in _monitor_services(compose).values() if _args(s).command == "run"]
    port = scheduler["environment"]["MONITOR_METRICS_PORT"]
    assert scheduler["environment"]["MONITOR_METRICS_HOST"] == "0.0.0.0"  # reachable from outside the container
    assert any(str(p).endswith(f":{port}:{port}") for p in scheduler["ports"])
