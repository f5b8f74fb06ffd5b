"""The core commands through the real console entry point: import, export, init, db upgrade, help."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from monitor.cli import _walk, build_parser, main

GOOD = {"source": "x", "id": "1", "created_at": "2025-03-19T15:02:11+09:00", "author_id": "8812",
        "text": "楽天証券で勝手に中国株を買われた", "repost_of": None}


def _line(**changes) -> str:
    record = dict(GOOD)
    record.update(changes)
    return json.dumps({k: v for k, v in record.items() if v is not ...}, ensure_ascii=False)


@pytest.fixture
def bad_file(tmp_path: Path) -> Path:
    lines = [
        _line(id="1"),
        "{not json",
        _line(id="3", author_id=...),  # missing field
        _line(id="4", created_at="19/03/2025"),  # bad timestamp
        _line(id="5", source="myspace"),  # unknown source
        _line(id="6", text="ＳＢＩ証券でも不正ログインされた"),
    ]
    path = tmp_path / "posts.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_import_reports_bad_lines_with_file_and_line_and_keeps_good_ones(bad_file, db_url, capsys):
    assert main(["import", str(bad_file), "--db", db_url]) == 1
    err = capsys.readouterr().err
    assert f"{bad_file}:2: not valid JSON" in err
    assert f"{bad_file}:3: missing required field 'author_id'" in err
    assert f"{bad_file}:4: created_at '19/03/2025' is not an ISO 8601 timestamp" in err
    assert f"{bad_file}:5: unknown source 'myspace'" in err
    assert "2 new posts stored" in err
    # the same file again: nothing new, nothing duplicated, still a failing exit status
    assert main(["import", str(bad_file), "--db", db_url]) == 1
    assert "0 new posts stored, 2 already stored" in capsys.readouterr().err


def test_import_x_api_pages_keeps_users_and_reposts(db_url, shared, capsys, tmp_path):
    page = shared / "real" / "x" / "twarc2_jsonl" / "brexit.jsonl"
    assert main(["import", str(page), "--db", db_url]) == 0
    out = tmp_path / "out.jsonl"
    assert main(["export", "--db", db_url, "--format", "jsonl", "--output", str(out), "--raw-authors"]) == 0
    rows = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 100
    raw = json.loads(page.read_text(encoding="utf-8"))
    users = {u["id"]: u["username"] for u in raw["includes"]["users"]}
    by_id = {r["id"]: r for r in rows}
    for tweet in raw["data"]:
        row = by_id[tweet["id"]]
        assert row["author_handle"] == users[tweet["author_id"]]
        retweeted = [r["id"] for r in tweet.get("referenced_tweets", []) if r["type"] == "retweeted"]
        assert row["repost_of"] == (retweeted[0] if retweeted else None)


def test_import_twarc_stream_with_truncated_last_line(db_url, shared, capsys):
    path = shared / "real" / "x" / "twarc2_jsonl" / "streaming_output_with_error.jsonl"
    assert main(["import", str(path), "--db", db_url]) == 1
    err = capsys.readouterr().err
    assert f"{path}:8: not valid JSON" in err
    assert "7 new posts stored" in err


def test_export_csv_and_parquet(bad_file, sqlite_url, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MONITOR_PSEUDONYM_KEY", "test-key")
    main(["import", str(bad_file), "--db", sqlite_url])
    capsys.readouterr()
    assert main(["export", "--db", sqlite_url, "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["id"] for r in rows] == ["1", "6"]
    assert rows[0]["created_at"] == "2025-03-19T15:02:11+09:00"  # the writer's offset is kept
    pq = pytest.importorskip("pyarrow.parquet")
    target = tmp_path / "posts.parquet"
    assert main(["export", "--db", sqlite_url, "--format", "parquet", "--output", str(target)]) == 0
    table = pq.read_table(target)
    assert table.num_rows == 2 and table.column("text").to_pylist()[1] == "ＳＢＩ証券でも不正ログインされた"
    assert main(["export", "--db", sqlite_url, "--format", "parquet"]) == 1
    assert "give --output" in capsys.readouterr().err


def test_init_writes_a_config_that_loads(tmp_path, capsys):
    from monitor.settings import load_settings

    target = tmp_path / "incident-monitor.toml"
    assert main(["init", str(target)]) == 0
    settings = load_settings(target, env={})
    assert settings.pipeline.cycle_seconds == 60
    assert main(["init", str(target)]) == 1
    assert "already exists" in capsys.readouterr().err


def test_db_upgrade_reports_revision(sqlite_url, capsys):
    from storage.database import head_revision

    assert main(["db", "upgrade", "--db", sqlite_url]) == 0
    assert f"schema at revision {head_revision()}" in capsys.readouterr().out


def test_unreachable_database_is_one_clear_line(capsys, tmp_path):
    code = main(["db", "upgrade", "--db", "postgresql://nobody@127.0.0.1:1/none"])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err.startswith("error: cannot reach the database at postgresql+psycopg://nobody@127.0.0.1:1/none")
    assert "\n" not in err


def test_every_command_has_help_that_ends_with_an_example():
    parser = build_parser()
    leaves = [p for p in _walk(parser) if p.get_default("handler")]
    assert len(leaves) >= 5
    for sub in leaves:
        text = sub.format_help()
        assert "Example: incident-monitor" in text, f"{sub.prog} has no example in its help"
        shared = sub.get_default("shared_options")
        if shared is None or "db" in shared:  # commands that read no store do not take --db
            assert "--db" in text, f"{sub.prog} lacks the shared --db option"


def test_jsonl_outputs_stay_one_line_per_record_with_unicode_line_breaks(tmp_path, capsys):
    """Regression: an id holding U+0085 (NEL) was written raw, and str.splitlines() cut the output line."""
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": "\x85", "text": "楽天証券で勝手に売られた\u2028どうしよう"}) + "\n", encoding="utf-8")
    assert main(["nlp", "classify", str(src)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    row = json.loads(lines[0])
    assert row["id"] == "\x85" and row["label"] in ("victim_report", "incident_discussion", "irrelevant")
