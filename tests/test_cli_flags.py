"""Flags do what they say, through the product CLI: no command accepts --db or --config and ignores it."""

from __future__ import annotations

import pytest

from monitor.cli import main


def test_nlp_classify_and_eval_take_the_model_from_config(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text(f'[nlp]\nmodel = "{tmp_path / "no-model"}"\n', encoding="utf-8")
    posts = tmp_path / "p.jsonl"
    posts.write_text('{"id": "1", "text": "楽天証券で不正ログイン"}\n', encoding="utf-8")
    assert main(["nlp", "classify", str(posts), "--config", str(config)]) == 1
    assert f"model directory {tmp_path / 'no-model'} not found" in capsys.readouterr().err
    assert main(["nlp", "eval", "--config", str(config)]) == 1
    assert "no-model" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["spikes", "detect", "x.csv", "--db", "sqlite://"],
                                  ["spikes", "detect", "x.csv", "--config", "c.toml"],
                                  ["nlp", "classify", "--db", "sqlite://"]])
def test_flags_a_command_would_ignore_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2 and "unrecognized arguments" in capsys.readouterr().err


def test_a_command_module_that_fails_to_import_is_an_error_not_a_missing_command(monkeypatch, capsys):
    import monitor.cli

    monkeypatch.setattr(monitor.cli, "COMMAND_MODULES", (*monitor.cli.COMMAND_MODULES, "monitor.commands.nonexistent"))
    assert main(["--help"]) == 1
    assert "command module monitor.commands.nonexistent cannot be imported" in capsys.readouterr().err
