"""The corpus split, the classifiers and training: contracts, not figures."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import nlp
from nlp.classify import BUNDLED_MODEL, TfidfLogReg, TfidfSpec, load_classifier
from nlp.corpus import LABELS, CorpusError, Example, load_corpus, parse_record, read_jsonl, split_of
from nlp.errors import ModelLoadError
from nlp.evaluate import label_report, set_micro

REPO = Path(__file__).resolve().parents[1]


def test_import_nlp_resolves_to_this_repository():
    # A stray `nlp` on sys.path (spaCy's old name, a notebook folder) must not shadow ours.
    assert Path(nlp.__file__).resolve().parent == REPO / "nlp"
    assert nlp.LABELS == ("victim_report", "incident_discussion", "irrelevant")


# --------------------------------------------------------------------------------------------------
# corpus


def test_split_is_a_pure_function_of_the_id_with_70_15_15_proportions():
    ids = [f"post-{i}" for i in range(20000)]
    counts = Counter(split_of(i) for i in ids)
    assert abs(counts["train"] / 20000 - 0.70) < 0.02
    assert abs(counts["dev"] / 20000 - 0.15) < 0.02
    assert abs(counts["test"] / 20000 - 0.15) < 0.02
    assert [split_of(i) for i in ids[:50]] == [split_of(i) for i in ids[:50]]


def _write(tmp_path: Path, name: str, rows: list) -> Path:
    path = tmp_path / name
    path.write_text(
        "\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows) + "\n",
        encoding="utf-8",
    )
    return path


GOOD = {
    "id": "t-1",
    "text": "楽天証券で勝手に株を売られた",
    "label": "victim_report",
    "style": "x",
    "brokers": ["楽天証券"],
}


def test_bad_records_are_reported_with_file_and_line(tmp_path):
    path = _write(
        tmp_path,
        "a.jsonl",
        [
            GOOD,
            '{"id": "t-2", "text": ',  # truncated JSON
            {**GOOD, "id": "t-3", "label": "spam"},
            {**GOOD, "id": "t-4", "brokers": ["楽天"]},  # alias, not the canonical name
            {**GOOD, "id": "t-5", "tickers": ["700"]},  # not normalized
            {**GOOD, "id": "t-1"},  # duplicate
        ],
    )
    examples, problems = read_jsonl(path)
    assert [e.id for e in examples] == ["t-1", "t-1"]
    assert [p.split(": ")[0] for p in problems] == [f"{path}:{n}" for n in (2, 3, 4, 5)]
    with pytest.raises(CorpusError) as err:
        load_corpus(paths=[path])
    msg = str(err.value)
    assert msg.startswith(f"{path}:2: invalid JSON") and "more problems" in msg and "\n" not in msg


def test_load_corpus_filters_by_split_and_names_a_missing_path(tmp_path):
    rows = [{**GOOD, "id": f"t-{i}"} for i in range(40)]
    path = _write(tmp_path, "b.jsonl", rows)
    by_split = {s: load_corpus(s, paths=[tmp_path]) for s in ("train", "dev", "test")}
    assert sum(len(v) for v in by_split.values()) == 40
    assert all(ex.split == s for s, v in by_split.items() for ex in v)
    assert {ex.source.split(":")[0] for ex in by_split["train"]} == {str(path)}
    with pytest.raises(CorpusError, match="not found"):
        load_corpus(paths=[tmp_path / "missing.jsonl"])
    with pytest.raises(CorpusError, match="unknown split"):
        load_corpus("validation", paths=[path])


def test_parse_record_accepts_the_documented_format():
    ex = parse_record(
        {"id": "vr-1", "text": "香港株(00700)を買われた", "label": "victim_report", "style": "5ch",
         "brokers": ["SBI証券"], "tickers": ["0700.HK", "130A.T", "600519.SS", "300750.SZ", "TSLA"],
         "ticker_names": ["9988.HK"], "note": "own account"}
    )  # fmt: skip
    assert ex.tickers[1] == "130A.T" and ex.ticker_names == ("9988.HK",) and ex.note == "own account"
    with pytest.raises(ValueError, match="'text'"):
        parse_record({"id": "x", "text": "  ", "label": "irrelevant"})


# --------------------------------------------------------------------------------------------------
# metrics


def test_label_report_counts_by_hand():
    gold = ["victim_report", "victim_report", "irrelevant", "incident_discussion"]
    pred = ["victim_report", "irrelevant", "irrelevant", "victim_report"]
    rep = label_report(gold, pred)
    assert rep["victim_report"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert rep["irrelevant"]["precision"] == 0.5 and rep["irrelevant"]["recall"] == 1.0
    assert rep["accuracy"]["f1"] == 0.5
    assert set_micro([{"楽天証券"}], [{"楽天証券"}])["f1"] == 1.0
    assert set_micro([set()], [set()])["f1"] == 0.0  # nothing to find, nothing found: no credit either way


# --------------------------------------------------------------------------------------------------
# classifiers


def _tiny_tfidf() -> TfidfLogReg:
    from sklearn.linear_model import LogisticRegression

    texts = ["勝手に売られた", "ニュースで見た", "ランチ美味しい"] * 4
    labels = list(LABELS) * 4
    spec = TfidfSpec(ngram_max=2)
    vec = spec.vectorizer()
    lr = LogisticRegression(max_iter=500).fit(vec.fit_transform(texts), labels)
    order = [list(lr.classes_).index(lab) for lab in LABELS]
    vocab = sorted(vec.vocabulary_, key=vec.vocabulary_.get)
    return TfidfLogReg(spec, [(vocab, vec.idf_)], lr.coef_[order], lr.intercept_[order])


def test_tfidf_weights_round_trip_without_pickle(tmp_path):
    model = _tiny_tfidf()
    model.save(tmp_path / "tfidf")
    with np.load(tmp_path / "tfidf" / "weights.npz", allow_pickle=False) as arrays:
        assert arrays["vocabulary_0"].dtype.kind == "U"  # strings as a plain array, not pickled objects
    loaded = TfidfLogReg.load(tmp_path / "tfidf")
    texts = ["勝手に売られた", "ランチ", "", "無関係な文"]
    assert np.allclose(loaded.predict_proba(texts), model.predict_proba(texts), atol=1e-6)
    probs = loaded.predict_proba(texts)
    assert probs.shape == (4, 3) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert loaded.predict_proba([]).shape == (0, 3)


def test_broken_model_directories_give_one_line_errors(tmp_path):
    with pytest.raises(ModelLoadError, match="not found"):
        load_classifier(tmp_path / "nope")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "classifier.json").write_text('{"format": 1, "use": "tfidf"}', encoding="utf-8")
    with pytest.raises(ModelLoadError, match="tfidf.json: missing"):
        load_classifier(tmp_path / "m")
    _tiny_tfidf().save(tmp_path / "m" / "tfidf")
    (tmp_path / "m" / "tfidf" / "weights.npz").write_bytes(b"not a zip")
    with pytest.raises(ModelLoadError) as err:
        load_classifier(tmp_path / "m")
    assert "weights.npz" in str(err.value) and "\n" not in str(err.value)


CLEAR = [
    ("楽天証券の口座に不正ログインされて、保有してた株を全部勝手に売られた。知らない中国株を大量に買われてる。", "victim_report"),
    ("昨夜SBI証券から身に覚えのない約定メールが来て、確認したら私の口座で香港株が買われてた。今サポートに電話してる", "victim_report"),
    ("金融庁によると、証券口座の乗っ取りによる不正取引は2月から4月で1454件に上った。各社は多要素認証の必須化を進めている。", "incident_discussion"),
    ("証券口座の乗っ取りが増えてるらしいので、皆さん二段階認証は必ず設定しましょう。", "incident_discussion"),
    ("今日のランチはラーメン。午後から会議。", "irrelevant"),
    ("楽天市場のお買い物マラソンでポイント10倍だった", "irrelevant"),
]  # fmt: skip


def test_bundled_model_loads_offline_and_gets_clear_cases_right(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    clf = load_classifier()
    assert clf.path == BUNDLED_MODEL
    assert clf.model_version.startswith("victim-clf@")
    probs = clf.predict_proba([nlp_normalize(t) for t, _ in CLEAR])
    assert [LABELS[i] for i in probs.argmax(axis=1)] == [label for _, label in CLEAR]


def nlp_normalize(text: str) -> str:
    from nlp.normalize import normalize

    return normalize(text).text


def test_bundled_model_card_says_which_candidate_ships_and_why():
    cfg = json.loads((BUNDLED_MODEL / "classifier.json").read_text(encoding="utf-8"))
    card = (BUNDLED_MODEL / "model_card.md").read_text(encoding="utf-8")
    assert cfg["use"] in ("tfidf", "transformer", "ensemble", "cascade")
    assert "dev split" in card and "test split was not used" in card
    size = sum(p.stat().st_size for p in BUNDLED_MODEL.rglob("*") if p.is_file())
    assert size < 8_000_000, f"bundled model is {size} bytes; keep it a few MB"


def _slice() -> list[Example]:
    rows = []
    phrases = {
        "victim_report": [
            "口座を乗っ取られて株を勝手に売られた",
            "知らない香港株を買われてた",
            "身に覚えのない出金があった",
        ],
        "incident_discussion": [
            "乗っ取りのニュースを見た",
            "二段階認証を設定しよう",
            "被害が増えているらしい",
        ],
        "irrelevant": ["今日は雨", "ラーメン食べた", "楽天市場で買い物"],
    }
    for lab, texts in phrases.items():
        for i in range(12):
            rows.append(Example(id=f"{lab}-{i}", text=f"{texts[i % 3]} {i}", label=lab))
    return rows


@pytest.mark.slow
def test_training_a_tiny_model_for_one_epoch_writes_a_loadable_directory(tmp_path):
    pytest.importorskip("torch")
    from nlp.train import TrainConfig, train

    cfg = TrainConfig(epochs=1, vocab_size=120, hidden_size=32, layers=1, max_length=32, batch_size=16)
    data = _slice()
    assert {e.split for e in data} >= {"train", "dev"}
    report = train(
        tmp_path / "m", examples=data, cfg=cfg, candidates=("tfidf", "words", "transformer"), log=lambda _: None
    )
    assert report.use in ("tfidf", "words", "cascade", "transformer", "ensemble")
    for use in ("tfidf", "words", "cascade", "transformer"):
        clf = load_classifier(tmp_path / "m", use=use)
        probs = clf.predict_proba(["口座を乗っ取られた", "今日は雨"])
        assert probs.shape == (2, 3) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    assert (tmp_path / "m" / "transformer" / "model.onnx").exists()
    assert (tmp_path / "m" / "transformer" / "tokenizer.json").exists()
    assert "dev split" in (tmp_path / "m" / "model_card.md").read_text(encoding="utf-8")
    cfg_written = json.loads((tmp_path / "m" / "classifier.json").read_text(encoding="utf-8"))
    assert cfg_written["victim_bias"] in [r["bias"] for r in cfg_written["victim_tradeoff"]]
    assert "victim_report decision threshold" in (tmp_path / "m" / "model_card.md").read_text(
        encoding="utf-8"
    )


def test_the_same_data_and_seed_give_the_same_model_version_and_weights(tmp_path, monkeypatch):
    from nlp.train import TrainConfig, baseline, train

    data = _slice()
    runs = [train(tmp_path / name, examples=data, cfg=TrainConfig(), log=lambda _: None) for name in ("a", "b")]
    assert runs[0].version == runs[1].version and re.fullmatch(r"[0-9a-f]{12}", runs[0].version)
    for sub in ("tfidf", "words"):
        with np.load(tmp_path / "a" / sub / "weights.npz") as a, np.load(tmp_path / "b" / sub / "weights.npz") as b:
            assert sorted(a.files) == sorted(b.files)
            assert all(np.array_equal(a[k], b[k]) for k in a.files)
    other = train(tmp_path / "c", examples=data, cfg=TrainConfig(seed=14), log=lambda _: None)
    assert other.version != runs[0].version
    # Regression: the same posts in another file order gave the same version but other augmented posts.
    shuffled = train(tmp_path / "d", examples=data[::-1], cfg=TrainConfig(), log=lambda _: None)
    assert shuffled.version == runs[0].version
    with np.load(tmp_path / "a" / "tfidf" / "weights.npz") as a, np.load(tmp_path / "d" / "tfidf" / "weights.npz") as d:
        assert all(np.array_equal(a[k], d[k]) for k in a.files)
    # Regression: the version hashed only the inputs, so code that changed the weights kept the version.
    capped = baseline.capped_vocabulary
    monkeypatch.setattr(baseline, "capped_vocabulary", lambda *a, **k: capped(*a, **k)[1:])
    changed = train(tmp_path / "e", examples=data, cfg=TrainConfig(), log=lambda _: None)
    written = [json.loads((tmp_path / d / "classifier.json").read_text(encoding="utf-8")) for d in ("a", "e")]
    assert written[0]["data_version"] == written[1]["data_version"] != written[0]["version"]
    assert changed.version != runs[0].version == written[0]["version"]


def test_the_vocabulary_cap_breaks_ties_by_document_frequency_then_a_fixed_hash():
    from nlp.train.baseline import capped_vocabulary

    # Regression: scikit-learn's max_features left ties among equally frequent terms to numpy's unstable
    # sort (here it kept a and b), so which of them a capped vocabulary kept was not a property of the data.
    docs = ["a a", "c", "b", "c", "b"]  # each term counted twice; a in one post only
    assert capped_vocabulary(str.split, docs, 2, min_df=1) == ["b", "c"]
    assert capped_vocabulary(str.split, docs[::-1], 2, min_df=1) == ["b", "c"]
    kept = {tuple(capped_vocabulary(str.split, order, 1, min_df=1)) for order in (docs, docs[::-1], sorted(docs))}
    assert kept in ({("b",)}, {("c",)})  # b and c tie on both counts: one of them, whatever the order


def test_the_capped_vectorizers_give_the_same_vocabulary_and_weights_in_any_training_order():
    from nlp.train import TrainConfig
    from nlp.train.baseline import fit_tfidf

    data = _slice()
    texts, labels = [ex.text for ex in data], [ex.label for ex in data]
    cfg = TrainConfig(tfidf_max_features=40)  # far below the slice's vocabulary, so the cap cuts through ties
    views = ("text", "frame", "words", "event")
    fits = [
        fit_tfidf(texts[::step], labels[::step], texts, labels, cfg, log=lambda _: None, views=views)
        for step in (1, -1)
    ]
    with_cap = [len(vocab) for vocab, _ in fits[0]._blocks]
    assert with_cap[:3] == [40, 40, 40], with_cap
    for (vocab_a, idf_a), (vocab_b, idf_b) in zip(fits[0]._blocks, fits[1]._blocks, strict=True):
        assert vocab_a == vocab_b and np.array_equal(idf_a, idf_b)
    # The solver sums the rows in another order: equal up to float rounding (nlp train fits in id order).
    assert np.allclose(fits[0]._coef_t, fits[1]._coef_t, atol=1e-5)


def test_the_shipped_victim_shift_is_the_dev_choice_plus_the_real_text_offset(tmp_path):
    from nlp.train import BIAS_GRID, TrainConfig, train

    for offset in (0.0, 0.5):
        train(tmp_path / str(offset), examples=_slice(), cfg=TrainConfig(victim_bias_offset=offset), log=lambda _: None)
        cfg = json.loads((tmp_path / str(offset) / "classifier.json").read_text(encoding="utf-8"))
        assert cfg["victim_bias"] == min(BIAS_GRID[-1], round(cfg["victim_bias_dev"] + offset, 2))
        assert cfg["victim_bias"] in [r["bias"] for r in cfg["victim_tradeoff"]]
        card = (tmp_path / str(offset) / "model_card.md").read_text(encoding="utf-8")
        assert f"{cfg['victim_bias']:+.2f}" in card and "shipped" in card


def test_fast_word_ngrams_equal_scikit_learn_exactly():
    from nlp.classify import WordNgramTfidf
    from nlp.features import word_tokens

    spec = TfidfSpec(views=("words",))
    docs = spec.view("words", ["私の口座で勝手に売られた", "母の口座も売られた", "今日は雨", "「売られた」と話す"] * 2)
    vec = spec.vectorizer(min_df=1, view="words").fit(docs)
    vocab = sorted(vec.vocabulary_, key=vec.vocabulary_.get)
    fast = WordNgramTfidf(vocab, vec.idf_)
    probe = [*docs, [], word_tokens("未知の単語だけ")]
    assert abs(vec.transform(probe) - fast.transform(probe)).max() < 1e-6


def test_fast_char_ngrams_equal_scikit_learn_exactly():
    from nlp.classify import CharNgramTfidf

    train = ["楽天証券で勝手に売られた", "ニュース  で見た\t話", "ランチ美味しい😋", "ｗｗｗ abc ABC"] * 3
    spec = TfidfSpec()
    vec = spec.vectorizer(min_df=1)
    vec.fit(train)
    vocab = sorted(vec.vocabulary_, key=vec.vocabulary_.get)
    fast = CharNgramTfidf(vocab, vec.idf_)
    probe = [*train, "", " ", "未知の文字列だけ", "売られた売られた売られた", "\ud800 surrogate", "a  \n  b"]
    assert abs(vec.transform(probe) - fast.transform(probe)).max() < 1e-6
    assert fast.transform([]).shape == (0, len(vocab))


@pytest.mark.slow
def test_base_accepts_a_local_checkpoint_and_exports_it_to_onnx(tmp_path):
    pytest.importorskip("torch")
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    from nlp.train import TrainConfig, train, train_tokenizer

    # A local checkpoint as any Hugging Face model directory looks: config, weights, fast tokenizer.
    data = _slice()
    raw = train_tokenizer([e.text for e in data], 120, 32)
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                  sep_token="[SEP]", mask_token="[MASK]")  # fmt: skip
    base = tmp_path / "base"
    BertForSequenceClassification(
        BertConfig(
            vocab_size=raw.get_vocab_size(),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
        )  # fmt: skip
    ).save_pretrained(str(base))
    tok.save_pretrained(str(base))
    cfg = TrainConfig(epochs=1, max_length=32, batch_size=16)
    report = train(
        tmp_path / "m",
        examples=data,
        base=str(base),
        cfg=cfg,
        candidates=("transformer",),
        log=lambda _: None,
    )
    assert report.use == "transformer"
    meta = json.loads((tmp_path / "m" / "transformer" / "transformer.json").read_text(encoding="utf-8"))
    assert meta["base"] == str(base)
    probs = load_classifier(tmp_path / "m").predict_proba(["口座を乗っ取られた"])
    assert probs.shape == (1, 3)


def test_unknown_base_model_offline_is_one_clear_error(monkeypatch, tmp_path):
    pytest.importorskip("torch")
    from nlp.train import TrainConfig, TrainError, train

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TrainError) as err:
        train(tmp_path / "m", examples=_slice(), base="no-such-org/no-such-model", cfg=TrainConfig(epochs=1),
              candidates=("transformer",), log=lambda _: None)  # fmt: skip
    assert "no-such-org/no-such-model" in str(err.value) and "\n" not in str(err.value)


def test_inference_never_imports_torch():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from nlp.pipeline import Analyzer\n"
        "from nlp.classify import load_classifier\n"
        "Analyzer.load().analyze_batch(['楽天証券で勝手に売られた', '今日は雨'])\n"
        "for use in ('tfidf', 'words', 'cascade'):\n"
        "    load_classifier(use=use).predict_proba(['口座を乗っ取られた'])\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


# --------------------------------------------------------------------------------------------------
# who experienced the event: voice features, third-person retellings, the victim threshold


def _voice(text: str) -> dict[str, float]:
    from nlp.features import FEATURE_NAMES, voice_features

    return dict(zip(FEATURE_NAMES, voice_features([nlp_normalize(text)])[0].tolist(), strict=True))


def test_voice_features_tell_an_own_case_from_a_story_about_someone_else():
    own = _voice("昨日、私の楽天証券の口座で勝手に中国株を買われた。")
    kin = _voice("母の口座から身に覚えのない出金があった")
    news = _voice("東京都の40代の男性は、口座の株を勝手に売られたという。")
    quoted = _voice("被害者の女性は「私の口座で勝手に売られた」と話す")
    hypo = _voice("もし勝手に売られた場合は、すぐに証券会社へ連絡しましょう")
    assert own["fp_event_sentence"] == 1 and own["tp_event_sentence"] == 0 and own["fp_frame"] == 1
    assert kin["kin_event_sentence"] == 1 and kin["bank"] == 1
    assert news["tp_event_sentence"] == 1 and news["reported"] == 1 and news["fp"] == 0
    # The victim's own "私" inside a quotation is not the writer speaking.
    assert quoted["fp"] == 1 and quoted["fp_frame"] == 0 and quoted["tp_without_fp"] == 0
    assert hypo["hypo_event_sentence"] == 1 and hypo["fp_event_sentence"] == 0
    assert all(0.0 <= v <= 1.0 for row in (own, kin, news, quoted, hypo) for v in row.values())


def test_voice_features_never_fail_on_odd_text():
    from nlp.features import FEATURE_NAMES, voice_features

    texts = ["", "\n\n\n", "。" * 1000, "私" * 5000, "「" * 50 + "私" + "」" * 3, "\ufffd"]
    out = voice_features(texts)
    assert out.shape == (len(texts), len(FEATURE_NAMES)) and np.isfinite(out).all()
    assert not out[0].any()


def _tiny_dense_tfidf(scale: float = 1.0) -> TfidfLogReg:
    from scipy.sparse import hstack
    from sklearn.linear_model import LogisticRegression

    texts = ["私の口座で勝手に売られた", "男性は勝手に売られたという", "ランチ美味しい"] * 4
    labels = list(LABELS) * 4
    spec = TfidfSpec(ngram_max=2, dense=("voice",), dense_scale=scale)
    vec = spec.vectorizer()
    x = hstack([vec.fit_transform(texts), spec.dense_block(texts)]).tocsr()
    lr = LogisticRegression(max_iter=500).fit(x, labels)
    order = [list(lr.classes_).index(lab) for lab in LABELS]
    vocab = sorted(vec.vocabulary_, key=vec.vocabulary_.get)
    return TfidfLogReg(spec, [(vocab, vec.idf_)], lr.coef_[order], lr.intercept_[order])


def test_dense_voice_block_round_trips_and_refuses_other_feature_names(tmp_path):
    model = _tiny_dense_tfidf(scale=0.5)
    model.save(tmp_path / "tfidf")
    loaded = TfidfLogReg.load(tmp_path / "tfidf")
    assert loaded.spec.dense == ("voice",) and loaded.spec.dense_scale == 0.5
    texts = ["私の口座で勝手に売られた", "", "男性は話す"]
    assert np.allclose(loaded.predict_proba(texts), model.predict_proba(texts), atol=1e-6)
    meta_path = tmp_path / "tfidf" / "tfidf.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["dense_features"] = meta["dense_features"][:-1]  # a model from an older features.py
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(ModelLoadError, match="retrain"):
        TfidfLogReg.load(tmp_path / "tfidf")


def test_third_person_retellings_keep_the_event_and_drop_the_first_person():
    from nlp.train import _FIRST_PERSON, third_person

    data = [
        Example(id="a", text="私の楽天証券の口座で勝手に株を売られた", label="victim_report"),
        Example(id="b", text="楽天証券で勝手に株を売られた", label="victim_report"),  # no first-person word
        Example(id="c", text="私は今日ラーメンを食べた", label="irrelevant"),
    ]
    out = third_person(data, 1.0, seed=3)
    assert len(out) == 1 and out[0].label == "incident_discussion"
    assert "勝手に株を売られた" in out[0].text and not _FIRST_PERSON.search(out[0].text)
    assert third_person(data, 0.0, seed=3) == []


def test_victim_bias_moves_only_the_victim_decision():
    from nlp.classify import shift_victim

    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=200).astype(np.float32)
    base = probs.argmax(axis=1) == 0
    up, down = shift_victim(probs, 0.7), shift_victim(probs, -0.7)
    assert np.allclose(up.sum(axis=1), 1.0, atol=1e-5) and np.allclose(down.sum(axis=1), 1.0, atol=1e-5)
    assert ((up.argmax(axis=1) == 0) >= base).all() and ((down.argmax(axis=1) == 0) <= base).all()
    assert (up.argmax(axis=1) == 0).sum() > base.sum() > (down.argmax(axis=1) == 0).sum()
    # The other two labels keep their order.
    assert (np.argmax(up[:, 1:], axis=1) == np.argmax(probs[:, 1:], axis=1)).all()
    assert shift_victim(probs, 0.0) is probs


def test_victim_bias_is_chosen_by_dev_f1_and_reported_for_every_shift():
    from nlp.train import BIAS_F1_TOLERANCE, BIAS_GRID, choose_victim_bias

    rng = np.random.default_rng(1)
    gold = [LABELS[i] for i in rng.integers(0, 3, size=300)]
    # A model that under-calls victim reports: the chosen shift must be positive.
    logits = np.stack([np.where(np.array(gold) == lab, 1.0, 0.0) for lab in LABELS], axis=1)
    logits = logits + rng.normal(0, 0.6, size=logits.shape)
    logits[:, 0] -= 1.0
    bias, rows = choose_victim_bias(gold, nlp_softmax(logits))
    assert bias in BIAS_GRID and [r["bias"] for r in rows] == list(BIAS_GRID)
    assert bias > 0
    best = max(r["f1"] for r in rows)
    assert next(r for r in rows if r["bias"] == bias)["f1"] >= best - BIAS_F1_TOLERANCE


def nlp_softmax(z: np.ndarray) -> np.ndarray:
    from nlp.classify import softmax

    return softmax(z)


def test_victim_bias_in_a_model_directory_applies_to_its_choice_only(tmp_path):
    _tiny_tfidf().save(tmp_path / "m" / "tfidf")
    cfg = {"format": 1, "name": "t", "version": "1", "use": "tfidf", "victim_bias": 2.0}
    (tmp_path / "m" / "classifier.json").write_text(json.dumps(cfg), encoding="utf-8")
    texts = ["ニュースで見た", "ランチ美味しい", "勝手に売られた"]
    shifted = load_classifier(tmp_path / "m").predict_proba(texts)
    plain = TfidfLogReg.load(tmp_path / "m" / "tfidf").predict_proba(texts)
    assert (shifted[:, 0] > plain[:, 0]).all()
    cfg["victim_bias"] = "high"
    (tmp_path / "m" / "classifier.json").write_text(json.dumps(cfg), encoding="utf-8")
    with pytest.raises(ModelLoadError, match="victim_bias"):
        load_classifier(tmp_path / "m")
