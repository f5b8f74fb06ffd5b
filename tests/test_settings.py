from __future__ import annotations

import pytest

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
        ("[storage]\ndatabase_url = 'sqlite:///x'\n", "is a secret and is not read from the config file"),
        ("[pipeline]\ncycle_seconds = 'often'\n", "[pipeline].cycle_seconds must be an integer"),
        ("[pipeline]\ncycle_secs = 5\n", "unknown setting(s) cycle_secs"),
        ("[nope]\n", "unknown section(s) [nope]"),
        ("[pipeline\n", "not valid TOML"),
    ],
)
def test_bad_config_is_one_clear_error(tmp_path, toml, message):
    path = tmp_path / "incident-monitor.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert message in str(info.value)
    assert "\n" not in str(info.value)


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
