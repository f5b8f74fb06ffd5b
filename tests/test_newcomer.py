"""What a new user tried, through the product CLI: each gets one clear line or the expected behaviour."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monitor.cli import main

POST = {"source": "x", "id": "1", "created_at": "2025-03-19T15:02:11+09:00", "author_id": "8", "text": "楽天証券で不正ログイン"}


def _one_error_line(capsys: pytest.CaptureFixture[str], needle: str) -> None:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err


@pytest.mark.parametrize("command", ["import", "replay"])
def test_a_directory_instead_of_a_file(tmp_path, capsys, command):
    assert main([command, str(tmp_path), "--db", f"sqlite:///{tmp_path / 's.db'}"]) == 1
    _one_error_line(capsys, "is a directory: name one JSONL file")


def test_an_unsupported_database_url(capsys):
    assert main(["status", "--db", "mysql://u@h/db"]) == 1
    _one_error_line(capsys, "database URL scheme 'mysql' is not supported")


@pytest.mark.parametrize("argv", [["status"], ["status", "--check"], ["export", "--raw-authors"], ["query"], ["alerts", "list"]])
def test_read_commands_never_create_a_store(tmp_path, capsys, argv):
    typo = tmp_path / "stroe.db"
    assert main([*argv, "--db", f"sqlite:///{typo}"]) == 1
    _one_error_line(capsys, "no store at")
    assert not typo.exists()


def test_export_to_a_missing_folder_is_one_line(tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 's.db'}"
    (tmp_path / "p.jsonl").write_text(json.dumps(POST) + "\n", encoding="utf-8")
    assert main(["import", str(tmp_path / "p.jsonl"), "--db", db]) == 0
    capsys.readouterr()
    assert main(["export", "--raw-authors", "--format", "csv", "--output", "/nonexistent/x.csv", "--db", db]) == 1
    _one_error_line(capsys, "/nonexistent/x.csv: cannot write the export")


def test_status_shows_posts_stored(tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 's.db'}"
    (tmp_path / "p.jsonl").write_text(json.dumps(POST) + "\n", encoding="utf-8")
    assert main(["import", str(tmp_path / "p.jsonl"), "--db", db]) == 0
    capsys.readouterr()
    main(["status", "--db", db])
    assert "posts stored: 1 (x 1)" in capsys.readouterr().out


def test_a_flattened_twarc2_file_is_imported(tmp_path, capsys):
    """Regression: a flattened tweet carries `source` (the posting app) and was rejected as
    "unknown source 'Twitter for Android'"."""
    tweet = {"id": "1902", "text": "SBI証券の口座が乗っ取られた", "author_id": "77", "created_at": "2025-03-19T06:02:11.000Z",
             "lang": "ja", "source": "Twitter for Android", "author": {"id": "77", "username": "hanako"},
             "__twarc": {"url": "https://api.x.com/2/tweets/search/recent", "version": "2.14.0"}}
    path = tmp_path / "flat.jsonl"
    path.write_text(json.dumps(tweet, ensure_ascii=False) + "\n", encoding="utf-8")
    assert main(["import", str(path), "--db", f"sqlite:///{tmp_path / 's.db'}"]) == 0
    assert "1 new posts stored" in capsys.readouterr().err


def test_a_counts_file_says_why_nothing_was_imported(tmp_path, capsys):
    page = {"data": [{"start": "2025-03-19T00:00:00.000Z", "end": "2025-03-19T01:00:00.000Z", "tweet_count": 4}],
            "meta": {"total_tweet_count": 4}}
    path = tmp_path / "counts.jsonl"
    path.write_text(json.dumps(page) + "\n", encoding="utf-8")
    assert main(["import", str(path), "--db", f"sqlite:///{tmp_path / 's.db'}"]) == 0
    assert "imported 0 posts: its lines hold no posts (X API counts pages" in capsys.readouterr().err


def test_spikes_detect_reads_an_excel_csv_with_a_ten_year_gap(tmp_path: Path, capsys):
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufefftimestamp,value\n2015-01-01 00:00:00,1\n2015-01-01 00:05:00,2\n"
                     "2025-01-01 00:00:00,3\n2025-01-01 00:05:00,1\n".encode())
    assert main(["spikes", "detect", str(path)]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert rows[0] == "timestamp,score,alert" and len(rows) == 5
