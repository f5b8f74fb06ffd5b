"""`--log-format json`: every stderr line is one JSON object (time, level, logger, message, extra fields),
at -vv too, with secrets still masked - for `collect x --once` (tweepy logs its request headers at debug)
and for `run` (whose own lines go out as JSON as well)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from servers import wait_until
from servers.x_api import FakeX, make_tweets

from monitor.cli import main
from monitor.logjson import JsonFormatter
from monitor.redact import RedactingFilter

REPO = Path(__file__).resolve().parents[1]
X_TOKEN = "AAAAAAAAAAAAAAAAAAAAAJs0nT0k3n%2Fsecret%3Dvalue"


def _env(x_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("X_", "REDDIT_", "BLUESKY_", "SLACK_", "JETSTREAM",
                                                                      "DATABASE_URL", "MONITOR_"))}
    env.update(PYTHONPATH=str(REPO), X_BEARER_TOKEN=X_TOKEN, X_API_BASE_URL=x_url)
    return env


def _json_lines(stderr: str) -> list[dict]:
    lines = [json.loads(line) for line in stderr.splitlines() if line.strip()]  # each line must parse
    assert lines and all(isinstance(line, dict) for line in lines)
    return lines


def test_collect_at_debug_level_logs_json_lines_without_the_token(tmp_path: Path) -> None:
    config = tmp_path / "incident-monitor.toml"
    config.write_text("[x]\nbrokers = [\"楽天証券\"]\nsearch_floor_seconds = 0\n", encoding="utf-8")
    with FakeX(make_tweets(5), good_token=X_TOKEN) as x:
        proc = subprocess.run([sys.executable, "-m", "monitor", "collect", "x", "--once", "-vv", "--log-format", "json",
                               "--db", f"sqlite:///{tmp_path / 's.sqlite'}", "--config", str(config)],
                              env=_env(x.url), cwd=tmp_path, capture_output=True, text=True, timeout=180)
        assert x.calls  # the token was used against the server
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = _json_lines(proc.stderr)
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    assert any(line["level"] == "DEBUG" for line in lines)
    assert any("Authorization" in line["message"] and "***" in line["message"] for line in lines)  # tweepy's headers
    assert X_TOKEN not in proc.stderr and "Js0nT0k3n" not in proc.stderr and X_TOKEN not in proc.stdout


def test_run_writes_only_json_to_stderr(tmp_path: Path) -> None:
    config = tmp_path / "incident-monitor.toml"
    config.write_text("[x]\nsearch_floor_seconds = 0\n[scheduler]\nx_seconds = 1\njitter_seconds = 0\n"
                      "[reddit]\nenabled = false\n[bluesky]\nenabled = false\n", encoding="utf-8")
    with FakeX([], good_token=X_TOKEN) as x:
        proc = subprocess.Popen([sys.executable, "-m", "monitor", "run", "--no-cycle", "-vv", "--log-format", "json",
                                 "--db", f"sqlite:///{tmp_path / 's.sqlite'}", "--config", str(config)],
                                env=_env(x.url), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert wait_until(lambda: len(x.requests) >= 2, 60)
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, err[-2000:]
    lines = _json_lines(err)
    messages = [line["message"] for line in lines]
    assert any(m.startswith("running: x") for m in messages) and messages[-1] == "stopped"
    assert X_TOKEN not in err


def test_an_error_is_one_json_line(tmp_path, capsys) -> None:
    assert main(["status", "--db", f"sqlite:///{tmp_path / 'none.sqlite'}", "--log-format", "json"]) == 1
    err = capsys.readouterr().err
    [line] = _json_lines(err)
    assert line["level"] == "ERROR" and line["message"].startswith("error: ") and "no store at" in line["message"]
    assert main(["status", "--db", f"sqlite:///{tmp_path / 'none.sqlite'}"]) == 1  # text again afterwards
    assert capsys.readouterr().err.startswith("error: ")


def test_extra_fields_are_kept_and_masked() -> None:
    secret = "s3cret-value-123456"
    record = logging.LogRecord("monitor.test", logging.INFO, __file__, 1, "sent %s", ("page",), None)
    record.source = "x"
    record.token = secret
    record.headers = {"Authorization": "Bearer other-token-abcdef", "Accept": "application/json"}
    record.count = 3
    RedactingFilter([secret]).filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "sent page" and line["source"] == "x" and line["count"] == 3
    assert line["token"] == "***" and line["headers"]["Accept"] == "application/json"
    text = json.dumps(line)
    assert secret not in text and "other-token-abcdef" not in text
