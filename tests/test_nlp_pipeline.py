"""Analyzer: the `nlp classify` output contract and robustness on any string."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nlp import LABELS, Analysis, Analyzer
from nlp.errors import ModelLoadError, TextError

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
EDINET = SHARED / "real" / "tickers" / "edinet_listed_companies_2026-04-10.csv"

CONTRACT_KEYS = ["brokers", "id", "label", "mentions", "model", "score", "scores", "tickers"]


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    return Analyzer.load()


def _check(a: Analysis) -> None:
    assert a.label in LABELS
    assert set(a.scores) == set(LABELS)
    assert a.score == a.scores[a.label] == max(a.scores.values())
    assert abs(sum(a.scores.values()) - 1.0) < 1e-3
    assert all(0.0 <= v <= 1.0 for v in a.scores.values())


def test_to_json_is_exactly_the_contract_line(analyzer):
    text = "楽天証券の口座が乗っ取られて、香港株(00700)を勝手に買われた"
    a = analyzer.analyze(text)
    row = a.to_json("x:190234")
    assert sorted(row) == CONTRACT_KEYS
    assert row["id"] == "x:190234" and row["model"] == analyzer.model_version
    assert "@" in row["model"] and a.tokenizer == "char-ngrams"
    assert row["brokers"] == ["楽天証券"] and row["label"] == "victim_report"
    for m in row["mentions"]:
        assert m["kind"] in ("broker", "ticker")
        assert text[m["start"] : m["end"]] == m["surface"]  # spans point into the original text
        assert ("by" in m) == (m["kind"] == "ticker")
    _check(a)


def test_batch_matches_single_calls_and_keeps_order(analyzer):
    texts = ["今日は雨", "SBI証券で身に覚えのない約定があった、私の口座です", "", "二段階認証を設定しよう"]
    batch = analyzer.analyze_batch(texts)
    assert [b.to_json("i") for b in batch] == [analyzer.analyze(t).to_json("i") for t in texts]
    assert analyzer.analyze_batch([]) == []


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "😱😱😱🔥" * 50,
        "\ud800 lone surrogate \udfff",
        "\u202e\u202dbidi\u200f\u200e marks\u2066",
        "\x00\x01\x07\x1b[31m control \x7f",
        "&amp;&#x6e2f;&#26666; &lt;script&gt;",
        "あ" * 1_000_000,
        "ｗ" * 10_000,
        "\n" * 5000,
    ],
    ids=[
        "empty",
        "space",
        "emoji",
        "surrogates",
        "bidi",
        "control",
        "entities",
        "1MB",
        "laughter",
        "newlines",
    ],
)
def test_hostile_strings_give_a_result(analyzer, text):
    _check(analyzer.analyze(text))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(max_size=300), min_size=1, max_size=5))
def test_any_strings_give_results_in_order(analyzer, texts):
    results = analyzer.analyze_batch(texts)
    assert len(results) == len(texts)
    for a in results:
        _check(a)


@pytest.mark.parametrize("bad", [None, 3, b"bytes", ["list"]])
def test_non_strings_give_one_clear_error(analyzer, bad):
    with pytest.raises(TextError) as err:
        analyzer.analyze(bad)  # type: ignore[arg-type]
    assert "string" in str(err.value) and "\n" not in str(err.value)


def test_official_securities_files_widen_the_listed_codes(analyzer):
    if not EDINET.exists():
        pytest.skip(f"../shared not found: {EDINET}")
    # 1375 is listed (EDINET) but not in the bundled master: with only a stock word nearby, the code counts
    # as a ticker once the official list says it is listed.
    text = "今日は1375が強い。株は難しい"
    wide = Analyzer.load(securities=[EDINET])
    assert "1375.T" not in analyzer.master and "1375.T" in wide.master
    assert analyzer.analyze(text).tickers == []
    assert wide.analyze(text).tickers == ["1375.T"]
    assert wide.model_version == analyzer.model_version


def test_a_missing_securities_file_is_one_clear_error(tmp_path):
    with pytest.raises(ModelLoadError) as err:
        Analyzer.load(securities=[tmp_path / "data_j.xls"])
    assert "not found" in str(err.value) and "\n" not in str(err.value)


def test_the_pipeline_normalizes_each_post_once(analyzer, monkeypatch):
    import nlp.entities
    import nlp.pipeline

    calls = []
    real = nlp.pipeline.normalize

    def counting(text):
        calls.append(text)
        return real(text)

    monkeypatch.setattr(nlp.pipeline, "normalize", counting)
    monkeypatch.setattr(nlp.entities, "normalize", counting)
    texts = ["楽天証券で勝手に00700を買われた", "今日は雨"]
    results = analyzer.analyze_batch(texts)
    assert calls == texts
    assert results[0].brokers == ["楽天証券"] and results[0].tickers == ["0700.HK"]


def test_provenance_names_the_sudachi_dictionary_only_for_posts_sudachi_read(analyzer):
    from nlp.tokenize import DICTIONARY_VERSION

    # A plain everyday post is clear to the first stage; an unsure one goes on to the Sudachi words model.
    texts = ["今日はラーメン食べた。美味しかった", "証券口座、なんか変な約定がある気がするけど自分の注文かも"]
    first = analyzer.classifier.model.first.predict_proba(texts).max(axis=1)
    results = analyzer.analyze_batch(texts)
    for confidence, a in zip(first, results, strict=True):
        routed = confidence < analyzer.classifier.model.confidence
        assert a.dictionary == (DICTIONARY_VERSION if routed else "")
    assert results[0].dictionary == ""
