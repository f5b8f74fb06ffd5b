"""`incident-monitor nlp classify | train | eval` through the real console entry point."""

from __future__ import annotations

import argparse
import io
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.cli import main
from monitor.commands import nlp as nlp_commands


def _run(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_classify_keeps_one_line_per_input_line_and_fails_at_the_end(tmp_path, capsys):
    lines = [
        json.dumps({"id": "1", "text": "楽天証券で勝手に中国株を買われた"}, ensure_ascii=False),
        "{not json",
        json.dumps({"text": "no id"}),
        json.dumps({"id": 7}),
        json.dumps({"id": "9", "text": 12}),
        "",
        json.dumps({"id": 10, "text": "今日は雨"}, ensure_ascii=False),
        "[1, 2]",
    ]
    path = tmp_path / "in.jsonl"
    path.write_bytes(("\n".join(lines) + "\n").encode() + b"\xff\xfe bad bytes\n")
    code, out, err = _run(capsys, ["nlp", "classify", str(path), "--batch", "3"])
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == len(lines) + 1
    assert [r.get("id") for r in rows] == ["1", None, None, 7, "9", None, 10, None, None]
    assert [("error" in r) for r in rows] == [False, True, True, True, True, True, False, True, True]
    assert rows[1]["error"].startswith("line 2: invalid JSON")
    assert "missing 'text'" in rows[3]["error"] and "must be a string" in rows[4]["error"]
    assert rows[0]["label"] == "victim_report" and rows[0]["brokers"] == ["楽天証券"]
    assert sorted(rows[6]) == ["brokers", "id", "label", "mentions", "model", "score", "scores", "tickers"]
    assert code == 1 and "7 of 9 lines failed" in err


def test_classify_reads_stdin_and_exits_zero_when_all_lines_are_good(monkeypatch, capsys):
    data = "".join(
        json.dumps({"id": f"p{i}", "text": t}, ensure_ascii=False) + "\n" for i, t in enumerate(["雨", "株"])
    )
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data.encode())))
    code, out, _ = _run(capsys, ["nlp", "classify"])
    assert code == 0 and [json.loads(x)["id"] for x in out.splitlines()] == ["p0", "p1"]


def test_missing_input_file_and_model_are_one_line_errors(tmp_path, capsys):
    code, out, err = _run(capsys, ["nlp", "classify", str(tmp_path / "none.jsonl")])
    assert code == 1 and out == "" and err.startswith("error: ") and err.count("\n") == 1
    code, _, err = _run(capsys, ["nlp", "classify", "--model", str(tmp_path), str(tmp_path / "x")])
    assert code == 1 and "classifier.json" in err and err.count("\n") == 1


def test_classify_reads_official_securities_files_once(tmp_path, capsys):
    from pathlib import Path

    edinet = Path(__file__).resolve().parents[1] / ".." / "shared" / "real" / "tickers"
    edinet = edinet / "edinet_listed_companies_2026-04-10.csv"
    if not edinet.exists():
        pytest.skip(f"../shared not found: {edinet}")
    posts = tmp_path / "posts.jsonl"
    posts.write_text(
        json.dumps({"id": "1", "text": "今日は1375が強い。株は難しい"}, ensure_ascii=False) + "\n"
    )
    code, out, _ = _run(capsys, ["nlp", "classify", str(posts)])
    assert code == 0 and json.loads(out)["tickers"] == []
    code, out, _ = _run(capsys, ["nlp", "classify", "--securities", str(edinet), "--", str(posts)])
    assert code == 0 and json.loads(out)["tickers"] == ["1375.T"]
    code, _, err = _run(
        capsys, ["nlp", "classify", "--securities", str(tmp_path / "data_j.xls"), "--", str(posts)]
    )
    assert code == 1 and "data_j.xls" in err and err.count("\n") == 1


def test_eval_on_a_labeled_file_prints_every_figure(tmp_path, capsys):
    rows = [
        {"id": "a", "text": "楽天証券の口座を乗っ取られて保有株を勝手に売られた。香港株00700を買われた",
         "label": "victim_report", "brokers": ["楽天証券"], "tickers": ["0700.HK"]},
        {"id": "b", "text": "証券口座の乗っ取りが相次いでいると報道。二段階認証を設定しよう", "label": "incident_discussion"},
        {"id": "c", "text": "今日のランチはカレーでした", "label": "irrelevant"},
    ]  # fmt: skip
    path = tmp_path / "labeled.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    code, out, _ = _run(capsys, ["nlp", "eval", "--file", str(path), "--errors", "5"])
    assert code == 0
    for needle in ("victim_report", "incident_discussion", "irrelevant", "precision", "recall", "f1",
                   "TF-IDF + logistic regression (baseline)", "broker micro-F1", "ticker-by-code micro-F1"):  # fmt: skip
        assert needle in out


def test_eval_and_train_report_bad_corpus_lines_with_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "x", "label": "victim_report"}\n{"id": \n', encoding="utf-8")
    code, _, err = _run(capsys, ["nlp", "eval", "--file", str(bad)])
    assert code == 1 and f"{bad}:2: invalid JSON" in err
    code, _, err = _run(capsys, ["nlp", "train", "--corpus", str(bad), "--output", str(tmp_path / "m")])
    assert code == 1 and f"{bad}:2" in err and err.count("\n") == 1


def test_eval_file_needs_no_ids_but_refuses_lines_without_text_or_label(tmp_path, capsys):
    rows = [
        {"text": "楽天証券の口座を乗っ取られて保有株を勝手に売られた", "label": "victim_report", "url": "https://a"},
        {"text": "今日のランチはカレーでした", "label": "victim_report"},
        {"id": "kept", "text": "証券口座の乗っ取りが相次いでいると報道", "label": "incident_discussion"},
    ]  # fmt: skip
    path = tmp_path / "excerpts.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    code, out, err = _run(capsys, ["nlp", "eval", "--file", str(path), "--errors", "5"])
    assert code == 0 and err == ""
    assert "excerpts.jsonl:2\tvictim_report\tirrelevant" in out  # the line number names an id-less miss
    for missing, needle in (
        ({"text": "x"}, "'label' must be one of"),
        ({"label": "irrelevant"}, "'text' must be"),
    ):
        bad = tmp_path / "bad.jsonl"
        bad.write_text(
            json.dumps(rows[0], ensure_ascii=False) + "\n" + json.dumps(missing) + "\n", encoding="utf-8"
        )
        code, out, err = _run(capsys, ["nlp", "eval", "--file", str(bad)])
        assert code == 1 and out == "" and err.count("\n") == 1
        assert f"{bad}:2: {needle}" in err and '"text" and "label"' in err and '"id" is optional' in err


def test_every_nlp_command_has_help_ending_with_an_example():
    parser = argparse.ArgumentParser()
    nlp_commands.register(parser.add_subparsers())
    nlp_parser = parser._subparsers._group_actions[0].choices["nlp"]
    subs = nlp_parser._subparsers._group_actions[0].choices
    assert set(subs) == {"classify", "train", "eval"}
    for name, sub in subs.items():
        assert sub.description.rstrip().split("Example: ")[-1].startswith("incident-monitor nlp " + name)


def test_classify_stream_isolates_a_post_that_breaks_its_batch():
    from nlp.errors import TextError

    class Flaky:
        def analyze_batch(self, texts):
            raise TextError("boom")

        def analyze(self, text):
            if text == "bad":
                raise TextError("cannot analyze this post")
            return type("A", (), {"to_json": lambda self, i: {"id": i, "label": "irrelevant"}})()

    src = io.BytesIO(b'{"id": "1", "text": "ok"}\n{"id": "2", "text": "bad"}\n{"id": "3", "text": "ok"}\n')
    out = io.StringIO()
    lines, failed = nlp_commands.classify_stream(src, out, Flaky(), batch=10)
    rows = [json.loads(x) for x in out.getvalue().splitlines()]
    assert (lines, failed) == (3, 1)
    assert rows == [{"id": "1", "label": "irrelevant"}, {"id": "2", "error": "cannot analyze this post"},
                    {"id": "3", "label": "irrelevant"}]  # fmt: skip


@pytest.mark.parametrize("argv", [["nlp", "train", "--epochs", "0"], ["nlp", "train", "--candidates", "svm"]])
def test_train_rejects_bad_options_before_training(argv, capsys, tmp_path):
    code, _, err = _run(capsys, [*argv, "--output", str(tmp_path / "m")])
    assert code == 1 and err.startswith("error: --")


@pytest.fixture(scope="module")
def analyzer():
    from nlp.pipeline import Analyzer

    return Analyzer.load()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=80),
            st.builds(
                lambda i, t: json.dumps({"id": i, "text": t}), st.text(max_size=8), st.text(max_size=80)
            ),
            st.builds(
                lambda i, t: json.dumps({"id": i, "text": t}, ensure_ascii=False), st.integers(), st.text()
            ),
        ),
        max_size=8,
    )
)
def test_any_input_bytes_give_one_json_line_per_line(analyzer, items):
    data = b"\n".join(i.encode("utf-8", "surrogatepass") if isinstance(i, str) else i for i in items)
    expected = len(io.BytesIO(data).readlines())
    out = io.StringIO()
    lines, failed = nlp_commands.classify_stream(io.BytesIO(data), out, analyzer, batch=3)
    rows = [json.loads(x) for x in out.getvalue().splitlines()]
    assert lines == len(rows) == expected
    assert failed == sum("error" in r for r in rows)
    assert all(("error" in r) != ("label" in r) for r in rows)
