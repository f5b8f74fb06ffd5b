"""`query` and `export` through the console entry point: filters, formats, counts, pseudonymised and
dehydrated exports, CSV formula neutralising, typed Parquet, and that read-only commands create nothing."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest

from monitor.cli import main
from storage.database import open_store
from tests.research_fixtures import POSTS, T0, build_store

KEY = "research-test-key"


@pytest.fixture
def store_url(db_url):
    engine = open_store(db_url)
    build_store(engine)
    engine.dispose()
    return db_url


def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_query_filters_and_search(store_url, capsys):
    code, out, _ = run(capsys, "query", "--db", store_url, "-q", "約定", "--broker", "楽天証券", "--format", "jsonl", "--order", "relevance",
                       "--raw-authors")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["id"] for r in rows][0] == "6"  # ranked: three 約定
    assert sorted(r["id"] for r in rows) == ["2", "6", "8"]
    assert all("楽天証券" in r["brokers"] for r in rows)
    code, out, _ = run(capsys, "query", "--db", store_url, "--count", "--label", "victim_report", "--source", "x")
    assert (code, out) == (0, "4\n")
    code, out, _ = run(capsys, "query", "--db", store_url, "--since", (T0 + timedelta(minutes=30)).isoformat())
    assert code == 0 and len(out.splitlines()) == 2 and "x:7" in out and "bluesky:8" in out


def test_query_refuses_hostile_or_empty_search_with_one_line(store_url, capsys):
    code, out, err = run(capsys, "query", "--db", store_url, "-q", '"*"')
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "no letters or digits" in err
    code, _, err = run(capsys, "query", "--db", store_url, "-q", "株" * 5000)
    assert code == 1 and "over the 200 limit" in err


def test_export_pseudonymises_authors_and_needs_a_key(store_url, capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("MONITOR_PSEUDONYM_KEY", raising=False)
    monkeypatch.delenv("MONITOR_PSEUDONYM_KEY_FILE", raising=False)
    code, out, err = run(capsys, "export", "--db", store_url)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "MONITOR_PSEUDONYM_KEY" in err and "--raw-authors" in err
    keyfile = tmp_path / "key"
    keyfile.write_text(KEY + "\n")
    monkeypatch.setenv("MONITOR_PSEUDONYM_KEY_FILE", str(keyfile))
    code, out, _ = run(capsys, "export", "--db", store_url)
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(rows) == len(POSTS)
    authors = {r["id"]: r["author_id"] for r in rows}
    assert authors["1"] == authors["6"] != authors["2"]  # the same person keeps one pseudonym
    assert not any(a.startswith("u") for a in authors.values())
    assert all(r["author_handle"] is None for r in rows)
    assert all("h_" not in (r["url"] or "") for r in rows)
    assert KEY not in out
    # mentions with spans into the text, and where the label came from
    four = next(r for r in rows if r["id"] == "4")
    spans = {m["value"]: four["text"][m["start"]:m["end"]] for m in four["mentions"]}
    assert spans == {"SBI証券": "ＳＢＩ証券", "0700.HK": "00700"}
    assert four["provenance"]["model"] == "victim-clf@test"
    assert four["provenance"]["dictionary"] == "sudachidict_core@test"
    assert four["provenance"]["tokenizer"] == "char-ngrams"
    # another key, other pseudonyms
    monkeypatch.setenv("MONITOR_PSEUDONYM_KEY", "another key")
    _, out, _ = run(capsys, "export", "--db", store_url)
    assert json.loads(out.splitlines()[0])["author_id"] != authors["1"]


def test_raw_authors_and_dehydrated_exports(store_url, capsys, monkeypatch):
    monkeypatch.delenv("MONITOR_PSEUDONYM_KEY", raising=False)
    code, out, _ = run(capsys, "export", "--db", store_url, "--raw-authors", "--label", "victim_report")
    assert code == 0 and {json.loads(x)["author_id"] for x in out.splitlines()} == {"u1", "u2", "u4", "u7"}
    code, out, _ = run(capsys, "export", "--db", store_url, "--dehydrated", "--format", "csv")
    rows = list(csv.reader(io.StringIO(out)))
    assert code == 0 and rows[0] == ["source", "id"] and len(rows) == len(POSTS) + 1


def test_csv_cells_that_spreadsheets_would_run_are_neutralised(store_url, capsys, monkeypatch):
    monkeypatch.setenv("MONITOR_PSEUDONYM_KEY", KEY)
    code, out, _ = run(capsys, "export", "--db", store_url, "--format", "csv")
    rows = {r["id"]: r for r in csv.DictReader(io.StringIO(out))}
    assert code == 0
    assert rows["7"]["text"].startswith("'=HYPERLINK(")
    for row in rows.values():
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), value


def test_parquet_has_typed_timestamps_and_mentions(store_url, capsys, monkeypatch, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    monkeypatch.setenv("MONITOR_PSEUDONYM_KEY", KEY)
    target = tmp_path / "posts.parquet"
    code, _, err = run(capsys, "export", "--db", store_url, "--format", "parquet", "--output", str(target),
                       "--ticker", "0700.HK")
    assert code == 0 and "wrote 1 posts" in err
    table = pq.read_table(target)
    assert table.schema.field("created_at").type == pa.timestamp("us", tz="UTC")
    row = table.to_pylist()[0]
    assert row["created_at"] == T0 + timedelta(minutes=15)
    assert row["utc_offset_min"] == 0
    assert {m["value"] for m in row["mentions"]} == {"SBI証券", "0700.HK"}


def test_counts_print_the_detectors_series(store_url, capsys):
    """The series is monitor.detect's counting: u1 reports twice in one bucket and counts once."""
    from monitor.detect.counting import bucket_counts, bucket_index
    from monitor.events import Report

    code, out, _ = run(capsys, "query", "--db", store_url, "--counts", "broker:楽天証券", "--bucket", "1h",
                       "--since", T0.isoformat(), "--until", (T0 + timedelta(hours=2)).isoformat(),
                       "--format", "jsonl")
    assert code == 0
    series = [json.loads(line) for line in out.splitlines()]
    assert [p["count"] for p in series] == [3, 0]  # u1 (twice), u2, u7 - one reporter each
    reports = [Report(f"x:{pid}", "x", f"x:{a}", T0 + timedelta(minutes=m), label, text,
                      tuple(b for b, *_ in brokers)) for pid, m, a, text, label, brokers, _ in POSTS]
    expected = bucket_counts(reports, timedelta(hours=1))[("broker", "楽天証券")]
    assert series[0]["count"] == expected[bucket_index(T0, timedelta(hours=1))]
    assert series[0]["expected"] is None  # no detector state stored in this store
    code, _, err = run(capsys, "query", "--db", store_url, "--counts", "楽天証券")
    assert code == 1 and "broker:NAME" in err


def test_read_only_commands_never_create_a_store(tmp_path, capsys):
    missing = tmp_path / "nothing" / "store.sqlite"
    for argv in (["query"], ["query", "--count"], ["export", "--raw-authors"]):
        code, _, err = run(capsys, *argv, "--db", f"sqlite:///{missing}")
        assert code == 1 and "no store at" in err
    assert not missing.parent.exists()


def test_counts_carry_the_stored_baselines_expected_values(store_url, capsys):
    from tests.research_fixtures import add_detector_state_and_alert

    engine = open_store(store_url)
    add_detector_state_and_alert(engine)
    engine.dispose()
    code, out, _ = run(capsys, "query", "--db", store_url, "--counts", "broker:楽天証券", "--bucket", "1h",
                       "--since", T0.isoformat(), "--until", (T0 + timedelta(hours=2)).isoformat(),
                       "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and [r["count"] for r in rows] == ["3", "0"]
    assert all(0 < float(r["expected"]) < 1 for r in rows)  # per-hour baseline of a quiet broker


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_goes_to_stderr_only_when_it_is_a_terminal(store_url, tmp_path, monkeypatch):
    import sys

    monkeypatch.setenv("MONITOR_PSEUDONYM_KEY", KEY)
    out = tmp_path / "all.jsonl"
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["export", "--db", store_url, "--output", str(out)]) == 0
    assert f"\rexported {len(POSTS)} posts" in terminal.getvalue()
    assert len(out.read_text(encoding="utf-8").splitlines()) == len(POSTS)
    piped = io.StringIO()
    monkeypatch.setattr(sys, "stderr", piped)
    assert main(["export", "--db", store_url, "--output", str(out)]) == 0
    assert "\r" not in piped.getvalue() and "wrote 8 posts" in piped.getvalue()


def test_near_duplicates_worked_out_per_text_match_the_detectors():
    """The counts series compares each distinct text once; the links must be those the detector finds."""
    from datetime import UTC, datetime

    from monitor.detect.dedup import NearDuplicates
    from monitor.events import Report
    from monitor.research import _neighbours_by_text

    texts = ["楽天証券で勝手に中国株を買われた。全部売られてた", "楽天証券で勝手に中国株を買われた。全部売られてた!!",
             "SBI証券のログイン履歴に知らない端末がある", "楽天証券で勝手に中国株を買われた。全部売られてた"]
    reports = [Report(post_key=f"x:{i}", source="x", author_key=f"x:a{i}", created_at=datetime(2025, 1, 1, tzinfo=UTC),
                      label="victim_report", text=texts[i % len(texts)]) for i in range(10)]
    expected = NearDuplicates(0.7).neighbours([r.post_key for r in reports], [r.text for r in reports])
    assert _neighbours_by_text(NearDuplicates(0.7), reports) == expected
    assert expected["x:0"] == ["x:1", "x:3", "x:4", "x:5", "x:7", "x:8", "x:9"]  # copies and the near copy
