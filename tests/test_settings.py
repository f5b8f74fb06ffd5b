from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.errors import ConfigError
from monitor.settings import Secret, load_settings, render_default_config


def test_defaults_without_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings(env={})
    assert settings.storage.database_url is None
    assert settings.pipeline.replay_step_seconds == 300


def test_secret_comes_from_environment_and_hides_its_value(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings(env={"DATABASE_URL": "postgresql://u:pw@h/db"})
    assert isinstance(settings.storage.database_url, Secret)
    assert "pw" not in repr(settings.storage)


def test_secret_from_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    secret = tmp_path / "db_url"
    secret.write_text("sqlite:///x.db\n")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("DATABASE_URL_FILE", str(secret))
    assert load_settings().storage.database_url == "sqlite:///x.db"


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[storage]\ndatabase_url = 'sqlite:///x'\n", "toml:2: [storage] database_url is a secret and is not read from"),
        ("[pipeline]\ncycle_seconds = 'often'\n", "toml:2: [pipeline] cycle_seconds must be a whole number, got 'often'"),
        ("[pipeline]\ncycle_secs = 5\n", "toml:2: [pipeline] cycle_secs: unknown setting 'cycle_secs': did you mean 'cycle_seconds'?"),
        ("[pipelin]\n", "toml:1: [pipelin]: unknown section [pipelin]: did you mean [pipeline]?"),
        ("[nope]\n", "unknown section [nope]: known sections are storage, pipeline"),
        ("[pipeline\n", "not valid TOML"),
        # the bad settings a read of the tree found: tracebacks, endless loops or silent nonsense before
        ("[detect]\nbucket_minutes = 0\n", "[detect] bucket_minutes must be greater than 0, got 0"),
        ("[detect]\nminhash_perm = 0\n", "[detect] minhash_perm must be greater than or equal to 16, got 0"),
        ("[pipeline]\nreplay_step_seconds = 0\n", "[pipeline] replay_step_seconds must be greater than 0"),
        ("[pipeline]\nreplay_step_seconds = -300\n", "[pipeline] replay_step_seconds must be greater than 0"),
        ("[pipeline]\nanalyze_batch = 0\n", "[pipeline] analyze_batch must be greater than 0"),
        ("[x]\ntimeout_seconds = -1.0\n", "[x] timeout_seconds must be greater than 0"),
        ("[scheduler]\nx_seconds = -5\n", "[scheduler] x_seconds must be greater than 0"),
        ("[alerts]\nmax_samples = -1\n", "[alerts] max_samples must be greater than or equal to 1"),
        ("[detect]\nseasonal = \"yes\"\n", "[detect] seasonal must be true or false, got 'yes'"),
        ("[x]\ndaily_budget_usd = nan\n", "[x] daily_budget_usd must be a finite number"),
        ("[x]\ndaily_budget_usd = inf\n", "[x] daily_budget_usd must be a finite number"),
        ("[x]\ndaily_budget_usd = -1.0\n", "[x] daily_budget_usd must be greater than or equal to 0"),
        ("[detect]\nwindows_minutes = [15, 0]\n", "[detect] windows_minutes item 1 must be greater than 0"),
        ("[detect]\nwindows_minutes = [15, 7]\n", "window 7 min must be a positive multiple of bucket_minutes"),
        ("[slack]\nroutes = { \"楽天\" = \"C1\" }\n", "did you mean '楽天証券'?"),
        ("pipeline = 3\n", "[pipeline] must be a table of settings"),
    ],
)
def test_bad_config_is_one_clear_error(tmp_path, toml, message):
    path = tmp_path / "incident-monitor.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("env", "message"),
    [({"X_API_BASE_URL": "api.x.com"}, "X_API_BASE_URL (environment): must be a URL"),
     ({"NLP_ONNX_THREADS": "-1"}, "NLP_ONNX_THREADS (environment): must be greater than or equal to 0"),
     ({"DATABASE_URL_FILE": "/nonexistent/secret"}, "DATABASE_URL_FILE=/nonexistent/secret: cannot read it")],
)
def test_bad_environment_is_one_clear_error(tmp_path, monkeypatch, env, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(env=env)


def test_environment_values_are_converted_and_override_the_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[nlp]\nonnx_threads = 2\n[x]\napi_base_url = "http://file"\n')
    settings = load_settings(path, env={"NLP_ONNX_THREADS": "3", "X_API_BASE_URL": "http://env"})
    assert (settings.nlp.onnx_threads, settings.x.api_base_url) == (3, "http://env")


def test_every_setting_line_of_init_works_uncommented(tmp_path):
    """`init` once wrote `# model = ""`, which broke the bot when uncommented."""
    text = render_default_config()
    defaults = load_settings(env={}).sections
    setting_lines = [i for i, line in enumerate(text.splitlines()) if line.startswith("# ")]
    assert len(setting_lines) > 50
    lines = text.splitlines()
    for i in setting_lines:
        one = lines.copy()
        one[i] = one[i][2:]
        path = tmp_path / "one.toml"
        path.write_text("\n".join(one), encoding="utf-8")
        assert load_settings(path, env={}).sections == defaults, lines[i]
    path.write_text("\n".join(line[2:] if line.startswith("# ") else line for line in lines), encoding="utf-8")
    assert load_settings(path, env={}).sections == defaults
    path.write_text("\n".join(line[1:] if line.startswith("#") else line for line in lines), encoding="utf-8")
    assert load_settings(path, env={}).sections == defaults  # help lines stay comments


def test_every_number_has_a_range():
    import dataclasses
    import typing

    from monitor.settings import available_sections

    for name, cls in available_sections().items():
        hints = typing.get_type_hints(cls, include_extras=True)
        for f in dataclasses.fields(cls):
            hint = hints[f.name]
            text = str(hint)
            if any(t in text for t in ("int", "float")) and "bool" not in text:
                assert "Annotated" in text and ("ge=" in text or "gt=" in text), f"[{name}] {f.name}: {hint} has no range"


def test_every_setting_is_documented():
    text = render_default_config()
    import dataclasses

    from monitor.settings import available_sections

    for name, cls in available_sections().items():
        assert f"[{name}]" in text
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help"), f"[{name}].{f.name} has no help text"


def test_official_securities_files_reach_the_analyzer(tmp_path, shared):
    """[nlp] securities_files loads an official list beside the bundled master: a TSE code the bundled
    master lacks is then extracted from a bare stock context."""
    from monitor.analyze import load_analyzer
    from nlp.securities import SecuritiesMaster

    edinet = shared / "real" / "tickers" / "edinet_listed_companies_2026-04-10.csv"
    bundled = SecuritiesMaster.bundled()
    full = SecuritiesMaster.load(edinet)
    code = next(c for c in sorted(full.by_code) if c.endswith(".T") and not bundled.is_listed(c) and c[0] == "6")
    config = tmp_path / "incident-monitor.toml"
    config.write_text(f'[nlp]\nsecurities_files = ["{edinet}"]\n', encoding="utf-8")
    settings = load_settings(config, env={})
    text = f"楽天証券で勝手に買われた銘柄 {code[:4]} を確認した"
    with_master = load_analyzer(settings.nlp.model, settings.nlp.securities_files).analyze(text)
    assert code in with_master.tickers


TOML_VALUES = st.one_of(
    st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1), st.floats(), st.text(max_size=20),
    st.lists(st.integers(min_value=-1000, max_value=10**6), max_size=4), st.lists(st.text(max_size=8), max_size=3),
    st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=8), max_size=2),
)


def _all_settings() -> list[tuple[str, str]]:
    import dataclasses

    from monitor.settings import available_sections

    return [(name, f.name) for name, cls in available_sections().items() for f in dataclasses.fields(cls)
            if not f.metadata.get("secret")]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_values_for_any_setting_give_a_result_or_one_line(tmp_path, data):
    from monitor.settings import _toml_value

    chosen = data.draw(st.lists(st.sampled_from(_all_settings()), min_size=1, max_size=3, unique=True))
    tables: dict[str, list[str]] = {}
    for section, key in chosen:
        tables.setdefault(section, []).append(f"{key} = {_toml_value(data.draw(TOML_VALUES))}")
    path = tmp_path / "random.toml"
    path.write_text("".join(f"[{s}]\n" + "\n".join(lines) + "\n" for s, lines in tables.items()), encoding="utf-8")
    try:
        load_settings(path, env={})
    except ConfigError as exc:
        assert "\n" not in str(exc) and str(exc)
