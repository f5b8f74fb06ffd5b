"""Train the classifier: a TF-IDF + logistic-regression baseline and a small transformers model.

``incident-monitor nlp train`` calls :func:`train`. Both candidates are fitted on the train split and
compared on the dev split only (the test split is never looked at here); the better one - or a weighted
ensemble of the two, when that is better still on dev - is what the written model directory uses. Both
candidates are kept in the directory so ``nlp eval`` can report them side by side.

The transformer is, by default, a tiny BERT trained from scratch with a Unigram tokenizer trained on the
corpus (``tokenizers``); ``base`` names any Hugging Face model id or local checkpoint to fine-tune instead.
It is exported to ONNX, so inference never needs torch. Training needs the ``train`` extra (torch).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nlp.classify import (
    CONFIG_NAME,
    FORMAT_VERSION,
    Ensemble,
    OnnxTransformer,
    TfidfLogReg,
    TfidfSpec,
    shift_victim,
)  # fmt: skip
from nlp.corpus import LABELS, Example, load_corpus
from nlp.errors import NLPError
from nlp.evaluate import best_labels, label_report


class TrainError(NLPError):
    """Training cannot run (missing torch, unusable base model, too little data)."""


@dataclass(frozen=True)
class TrainConfig:
    """Settings of `incident-monitor nlp train`; the lead wires them into the config file."""

    epochs: int = field(default=12, metadata={"help": "transformer training epochs"})
    seed: int = field(default=13, metadata={"help": "random seed for every step, so a run can be repeated"})
    max_length: int = field(default=128, metadata={"help": "tokens per post seen by the transformer"})
    vocab_size: int = field(
        default=3000, metadata={"help": "tokenizer vocabulary when training from scratch"}
    )
    hidden_size: int = field(default=128, metadata={"help": "transformer width when training from scratch"})
    layers: int = field(default=2, metadata={"help": "transformer layers when training from scratch"})
    batch_size: int = field(default=32, metadata={"help": "transformer training batch size"})
    learning_rate: float = field(default=0.0, metadata={"help": "0 = 1e-3 from scratch, 3e-5 with --base"})
    tfidf_ngram_max: int = field(default=3, metadata={"help": "longest char n-gram of the baseline"})
    tfidf_max_features: int = field(
        default=40000, metadata={"help": "vocabulary cap of the baseline, per view"}
    )
    tfidf_views: tuple[str, ...] = field(
        default=("text", "frame"), metadata={"help": "baseline feature views: text, frame (quotes collapsed)"}
    )
    tfidf_dense: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "dense feature blocks beside the baseline's TF-IDF: voice (who experienced the event)"
        },
    )
    tfidf_dense_scale: float = field(
        default=1.0, metadata={"help": "weight of the dense block against the L2-normalized TF-IDF rows"}
    )
    threads: int = field(default=2, metadata={"help": "CPU threads for torch during training"})
    augment_ratio: float = field(
        default=0.5,
        metadata={
            "help": "reported-speech variants of train victim reports, as a fraction of them (0 = none)"
        },
    )
    tune_victim_bias: bool = field(
        default=True,
        metadata={"help": "choose the victim_report decision threshold (a log-odds shift) on the dev split"},
    )
    third_person_ratio: float = field(
        default=0.0,
        metadata={
            "help": "third-person retellings of first-person train victim reports, as a fraction of them (0 = none)"
        },
    )
    min_speed_ratio: float = field(
        default=0.5,
        metadata={"help": "a candidate must classify at least this fraction of the baseline's posts/s"},
    )


Log = Callable[[str], None]


def _victim_f1(gold: Sequence[str], probs: np.ndarray) -> tuple[float, float]:
    rep = label_report(gold, best_labels(probs))
    return rep["victim_report"]["f1"], rep["macro"]["f1"]


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)


# --------------------------------------------------------------------------------------------------
# reported speech: the commonest false alarm on real pages

# A victim's own words, quoted by a news story, a summary blog, a hearsay post or a repost, are not a
# victim report (docs/labeling-guide.md). Real pages do this all the time and the hand-written corpus does
# it rarely, so the train split is extended with such frames around its own victim reports. Only train
# posts are used, so dev and test stay untouched.
_FRAMES = (
    "{place}{age}の{who}は「{q}」と話す。",
    "取材に応じた{place}{age}{who}は「{q}」と振り返った。同様の被害は各地で相次いでいる。",
    "「{q}」\nこうした投稿がSNSで相次いでいる。{broker}は注意を呼びかけている。",
    "被害に遭った{who}({age})\n「{q}」",
    "RT @{handle}: {q}",
    "これ怖すぎる… QT {q}",
    "TLで見たけど「{q}」って人がいるらしい。みんな二段階認証しといて",
    "ある{age}の{who}は{broker}の口座で被害に遭い、「{q}」と証言している。",
    "【被害者の声】「{q}」\n他人事ではありません。今すぐできる対策をまとめました。",
    "ネットで見た体験談:「{q}」 自分の口座も確認したけど大丈夫だった",
)
_AGES = ("20代", "30代", "40代", "50代", "60代", "70代")
_WHO = ("男性", "女性", "会社員の男性", "パート勤務の女性", "自営業の男性", "投資家")
_PLACES = ("", "東京都内の", "大阪府の", "関東在住の", "愛知県の", "福岡市の")
_BROKERS = ("楽天証券", "SBI証券", "マネックス証券", "野村證券", "松井証券", "証券会社")


def reported_speech(examples: Sequence[Example], ratio: float, seed: int) -> list[Example]:
    """incident_discussion variants that quote (or repost) randomly chosen victim reports."""
    victims = [ex for ex in examples if ex.label == "victim_report"]
    rng = random.Random(seed)
    out: list[Example] = []
    for i in range(int(len(victims) * max(0.0, ratio))):
        ex = rng.choice(victims)
        quote = " ".join(ex.text.split())[:160].replace("「", "『").replace("」", "』")
        frame = rng.choice(_FRAMES)
        text = frame.format(
            q=quote, age=rng.choice(_AGES), who=rng.choice(_WHO), place=rng.choice(_PLACES),
            broker=rng.choice(_BROKERS), handle=f"user{rng.randrange(10_000)}",
        )  # fmt: skip
        out.append(Example(id=f"aug-{i}-{ex.id}", text=text, label="incident_discussion", style="news"))
    return out


# The same event told about someone else: a victim report whose first-person words are swapped for a
# third-person subject is a story about another person's case (incident_discussion), the commonest false
# alarm on real news and blog pages. Only posts with an explicit first-person word are rewritten: a post
# whose subject is dropped would come out unchanged under the opposite label.
_FIRST_PERSON = re.compile(r"私|わたし|僕|ぼく|ボク|俺|おれ|オレ|自分|ワイ|あたし")
_THIRD_SUBJECTS = (
    "男性",
    "女性",
    "この男性",
    "その女性",
    "Aさん",
    "相談者",
    "投稿者",
    "この投資家",
    "被害者",
)
_NEWS_LEADS = (
    "",
    "",
    "{age}の{who}によると、",
    "取材によると、",
    "記者が話を聞いた{who}の場合、",
    "ある{who}のケース。",
)


def third_person(examples: Sequence[Example], ratio: float, seed: int) -> list[Example]:
    """incident_discussion variants of first-person victim reports retold about a third person."""
    victims = [ex for ex in examples if ex.label == "victim_report" and _FIRST_PERSON.search(ex.text)]
    rng = random.Random(seed + 1)
    out: list[Example] = []
    for i in range(min(len(victims), int(len(victims) * max(0.0, ratio)))):
        ex = victims[i] if ratio >= 1 else rng.choice(victims)
        who = rng.choice(_THIRD_SUBJECTS)
        lead = rng.choice(_NEWS_LEADS).format(age=rng.choice(_AGES), who=rng.choice(_WHO))
        text = lead + _FIRST_PERSON.sub(who, ex.text)
        out.append(Example(id=f"tp-{i}-{ex.id}", text=text, label="incident_discussion", style="news"))
    return out


# --------------------------------------------------------------------------------------------------
# baseline


def fit_tfidf(train_texts: Sequence[str], y: Sequence[str], dev_texts: Sequence[str], y_dev: Sequence[str],
              cfg: TrainConfig, log: Log = print) -> TfidfLogReg:  # fmt: skip
    """Char n-gram TF-IDF + multinomial logistic regression; C picked on dev."""
    from scipy.sparse import hstack
    from sklearn.linear_model import LogisticRegression

    spec = TfidfSpec(
        ngram_max=cfg.tfidf_ngram_max, views=tuple(cfg.tfidf_views), dense=tuple(cfg.tfidf_dense),
        dense_scale=cfg.tfidf_dense_scale,
    )  # fmt: skip
    vecs = [spec.vectorizer(min_df=2, max_features=cfg.tfidf_max_features) for _ in spec.views]
    x = [vec.fit_transform(spec.view(v, train_texts)) for v, vec in zip(spec.views, vecs, strict=True)]
    x_dev = [vec.transform(spec.view(v, dev_texts)) for v, vec in zip(spec.views, vecs, strict=True)]
    if spec.dense:
        x.append(spec.dense_block(train_texts))
        x_dev.append(spec.dense_block(dev_texts))
    x, x_dev = hstack(x).tocsr(), hstack(x_dev).tocsr()
    best: tuple[tuple[float, float], float, object] | None = None
    for c in (1.0, 3.0, 10.0, 30.0):
        lr = LogisticRegression(C=c, class_weight="balanced", max_iter=3000, random_state=cfg.seed)
        lr.fit(x, list(y))
        probs = lr.predict_proba(x_dev)[:, [list(lr.classes_).index(lab) for lab in LABELS]]
        score = _victim_f1(y_dev, probs)
        log(f"  tfidf C={c:<5} dev victim_report F1 {score[0]:.3f}  macro F1 {score[1]:.3f}")
        if best is None or score > best[0]:
            best = (score, c, lr)
    assert best is not None
    lr = best[2]
    order = [list(lr.classes_).index(lab) for lab in LABELS]
    blocks = [(sorted(vec.vocabulary_, key=vec.vocabulary_.get), vec.idf_) for vec in vecs]
    return TfidfLogReg(spec, blocks, lr.coef_[order], lr.intercept_[order], LABELS)


# --------------------------------------------------------------------------------------------------
# transformer


def _require_torch():
    try:
        import torch
    except ImportError:
        raise TrainError(
            "training the transformer needs torch: pip install 'incident-monitor[train]' "
            "(CPU build: pip install torch --index-url https://download.pytorch.org/whl/cpu)"
        ) from None
    return torch


def train_tokenizer(texts: Sequence[str], vocab_size: int, max_length: int):
    """A Unigram subword tokenizer over normalized text, saved later as the fast tokenizer.json."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    # Unigram keeps every character seen, so the vocabulary must at least hold the alphabet.
    alphabet = len(set("".join(texts)))
    vocab_size = max(vocab_size, alphabet + len(specials) + 64)
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        unk_token="[UNK]",
        max_piece_length=6,
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tok.enable_truncation(max_length)
    return tok


def _load_base(base: str, log: Log):
    """Tokenizer and model of a Hugging Face id or local checkpoint; offline when it is local."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    offline = Path(base).exists() or os.environ.get("HF_HUB_OFFLINE") == "1"
    kwargs = dict(
        num_labels=len(LABELS), id2label=dict(enumerate(LABELS)), label2id={lab: i for i, lab in enumerate(LABELS)},
        ignore_mismatched_sizes=True,
    )  # fmt: skip
    last: Exception | None = None
    for local_only in [True] if offline else [False, True]:
        try:
            tok = AutoTokenizer.from_pretrained(base, local_files_only=local_only)
            model = AutoModelForSequenceClassification.from_pretrained(
                base, local_files_only=local_only, **kwargs
            )
            log(f"  base model {base} loaded ({'local files' if local_only else 'hub'})")
            return tok, model
        except Exception as exc:  # hub errors, missing files, tokenizer deps (fugashi...) all land here
            last = exc
    raise TrainError(
        f"cannot load base model {base!r} ({type(last).__name__}: {str(last).splitlines()[0] if last else ''}); "
        "pass a local checkpoint directory or a model id reachable from this machine"
    )


def fit_transformer(train_texts: Sequence[str], y: Sequence[str], dev_texts: Sequence[str],
                    y_dev: Sequence[str], out_dir: Path, cfg: TrainConfig, base: str | None = None,
                    log: Log = print) -> OnnxTransformer:  # fmt: skip
    """Train (or fine-tune ``base``), keep the epoch best on dev, export ONNX + tokenizer to out_dir."""
    torch = _require_torch()
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    torch.manual_seed(cfg.seed)
    torch.set_num_threads(max(1, cfg.threads))
    out_dir.mkdir(parents=True, exist_ok=True)
    if base is None:
        raw = train_tokenizer(train_texts, cfg.vocab_size, cfg.max_length)
        tok = PreTrainedTokenizerFast(
            tokenizer_object=raw, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
            mask_token="[MASK]", model_max_length=cfg.max_length,
        )  # fmt: skip
        bert = BertConfig(
            vocab_size=raw.get_vocab_size(), hidden_size=cfg.hidden_size, num_hidden_layers=cfg.layers,
            num_attention_heads=max(1, cfg.hidden_size // 32), intermediate_size=cfg.hidden_size * 2,
            max_position_embeddings=cfg.max_length + 2, type_vocab_size=1, num_labels=len(LABELS),
            id2label=dict(enumerate(LABELS)), label2id={lab: i for i, lab in enumerate(LABELS)},
            hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
        )  # fmt: skip
        model = BertForSequenceClassification(bert)
        lr = cfg.learning_rate or 1e-3
    else:
        tok, model = _load_base(base, log)
        lr = cfg.learning_rate or 3e-5

    def encode(texts: Sequence[str]):
        return tok(list(texts), truncation=True, max_length=cfg.max_length)["input_ids"]

    train_ids, dev_ids = encode(train_texts), encode(dev_texts)
    y_idx = torch.tensor([LABELS.index(v) for v in y])
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0

    def batch(ids_list: list[list[int]]):
        width = max(len(s) for s in ids_list)
        ids = torch.full((len(ids_list), width), pad, dtype=torch.long)
        mask = torch.zeros((len(ids_list), width), dtype=torch.long)
        for i, s in enumerate(ids_list):
            ids[i, : len(s)] = torch.tensor(s)
            mask[i, : len(s)] = 1
        return ids, mask

    def predict(ids_all: list[list[int]]) -> np.ndarray:
        model.eval()
        rows = []
        with torch.no_grad():
            for s in range(0, len(ids_all), 64):
                ids, mask = batch(ids_all[s : s + 64])
                rows.append(torch.softmax(model(input_ids=ids, attention_mask=mask).logits, -1).numpy())
        return np.concatenate(rows) if rows else np.zeros((0, len(LABELS)))

    counts = np.bincount(y_idx.numpy(), minlength=len(LABELS)).astype(np.float32)
    weights = torch.tensor(counts.sum() / (len(LABELS) * np.maximum(counts, 1)), dtype=torch.float32)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    steps = max(1, cfg.epochs * ((len(train_ids) + cfg.batch_size - 1) // cfg.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    rng = random.Random(cfg.seed)
    best: tuple[tuple[float, float], dict] | None = None
    for epoch in range(cfg.epochs):
        model.train()
        order = list(range(len(train_ids)))
        rng.shuffle(order)
        t0, total = time.time(), 0.0
        for s in range(0, len(order), cfg.batch_size):
            idx = order[s : s + cfg.batch_size]
            ids, mask = batch([train_ids[i] for i in idx])
            loss = loss_fn(model(input_ids=ids, attention_mask=mask).logits, y_idx[idx])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        score = _victim_f1(y_dev, predict(dev_ids)) if dev_ids else (0.0, 0.0)
        log(f"  transformer epoch {epoch + 1}/{cfg.epochs} loss {total / max(1, len(order)):.3f} "
            f"dev victim_report F1 {score[0]:.3f} macro F1 {score[1]:.3f} ({time.time() - t0:.0f}s)")  # fmt: skip
        if best is None or score > best[0]:
            best = (score, {k: v.detach().clone() for k, v in model.state_dict().items()})
    assert best is not None
    model.load_state_dict(best[1])
    model.eval()
    _export_onnx(torch, model, out_dir / "model.onnx")
    tok.save_pretrained(str(out_dir))
    model.config.save_pretrained(str(out_dir))
    meta = {
        "kind": "transformer",
        "labels": list(LABELS),
        "max_length": cfg.max_length,
        "base": base or "scratch",
    }
    (out_dir / "transformer.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return OnnxTransformer(out_dir)


class _LogitsOnly:
    """Wraps a model so the ONNX graph has plain tensor inputs and one output named 'logits'."""

    def __init__(self, torch, model) -> None:
        class Wrapper(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, input_ids, attention_mask):
                return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

        self.module = Wrapper().eval()


def _export_onnx(torch, model, path: Path) -> None:
    import warnings

    wrapper = _LogitsOnly(torch, model).module
    ids = torch.ones((2, 8), dtype=torch.long)
    mask = torch.ones((2, 8), dtype=torch.long)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # The TorchScript exporter (dynamo=False) needs no onnxscript and handles dynamic batch/length.
        torch.onnx.export(
            wrapper, (ids, mask), str(path), input_names=["input_ids", "attention_mask"], output_names=["logits"],
            dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                          "logits": {0: "batch"}},
            opset_version=17, dynamo=False,
        )  # fmt: skip


# --------------------------------------------------------------------------------------------------
# the whole run


def _throughput(models: dict, texts: Sequence[str]) -> dict[str, float]:
    """Classifier posts/s of each candidate (and the ensemble) on dev texts, measured back to back."""
    sample = (list(texts) * (1 + 1000 // max(1, len(texts))))[:1000]
    speed: dict[str, float] = {}
    for cand, model in models.items():
        model.predict_proba(sample[:32])  # warm up lazy parts
        start = time.perf_counter()
        model.predict_proba(sample)
        speed[cand] = len(sample) / max(1e-9, time.perf_counter() - start)
    if len(models) == 2:
        speed["ensemble"] = 1.0 / sum(1.0 / v for v in speed.values())
    return speed


# Log-odds shifts tried for victim_report: from "needs 3x the evidence" to "needs a third of it".
BIAS_GRID = tuple(round(float(b), 2) for b in np.arange(-1.0, 1.01, 0.25))
# Dev F1 differences below this are one or two posts: noise, not a better threshold.
BIAS_F1_TOLERANCE = 0.005


def choose_victim_bias(gold: Sequence[str], probs: np.ndarray) -> tuple[float, list[dict[str, float]]]:
    """The victim_report log-odds shift best on dev, and the precision / recall of every shift tried.

    Among shifts whose dev F1 is within BIAS_F1_TOLERANCE of the best, dev cannot tell them apart, so the
    smallest shift wins (then the higher precision): a flat F1 curve is no reason to move the threshold,
    and moving it to an end of the grid on a one-post difference cost a third of the recall on real pages.
    """
    rows = []
    for b in BIAS_GRID:
        rep = label_report(gold, best_labels(shift_victim(probs, b)))["victim_report"]
        rows.append({"bias": b, "precision": round(rep["precision"], 4), "recall": round(rep["recall"], 4),
                     "f1": round(rep["f1"], 4)})  # fmt: skip
    top = max(r["f1"] for r in rows)
    near = [r for r in rows if r["f1"] >= top - BIAS_F1_TOLERANCE]
    best = min(near, key=lambda r: (abs(r["bias"]), -r["precision"]))
    return best["bias"], rows


def _eligible(speed: dict[str, float], cfg: TrainConfig) -> set[str]:
    """Candidates fast enough for the NLP stage budget, judged against the baseline in the same run.

    The stage (normalize + classify + extract) must keep >= 2,000 posts/s on a 2-core machine; the TF-IDF
    baseline is the cheapest classifier there is, so a candidate may cost at most ``1 / min_speed_ratio``
    times as much. Comparing within one run keeps the rule stable on a busy machine.
    """
    if "tfidf" not in speed:
        return set(speed)
    floor = speed["tfidf"] * cfg.min_speed_ratio
    return {c for c, v in speed.items() if c == "tfidf" or v >= floor}


@dataclass
class TrainReport:
    output: Path
    use: str
    dev: dict[str, tuple[float, float]]  # candidate -> (victim_report F1, macro F1) on dev
    weights: dict[str, float]
    version: str
    n_train: int
    n_dev: int


def _data_version(examples: Sequence[Example], seed: int) -> str:
    h = hashlib.sha256(str(seed).encode())
    for ex in sorted(examples, key=lambda e: e.id):
        h.update(f"{ex.id}\t{ex.label}\t{ex.text}\n".encode())
    return f"{time.strftime('%Y.%m.%d')}-{h.hexdigest()[:7]}"


def train(
    output: str | Path,
    *,
    corpus: Sequence[str | Path] | None = None,
    examples: Sequence[Example] | None = None,
    base: str | None = None,
    cfg: TrainConfig | None = None,
    name: str = "victim-clf",
    candidates: Sequence[str] = ("tfidf", "transformer"),
    log: Log = print,
) -> TrainReport:
    """Fit the candidates on train, choose on dev, write a model directory to ``output``."""
    from nlp.normalize import normalize

    cfg = cfg or TrainConfig()
    _seed_everything(cfg.seed)
    data = list(examples) if examples is not None else load_corpus(paths=corpus)
    tr = [ex for ex in data if ex.split == "train"]
    dv = [ex for ex in data if ex.split == "dev"]
    if len(tr) < 10 or len({ex.label for ex in tr}) < len(LABELS) or not dv:
        raise TrainError(
            f"too little data: {len(tr)} train / {len(dv)} dev posts; every label needs train posts and dev must "
            "not be empty (add posts to the corpus)"
        )
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    extra = reported_speech(tr, cfg.augment_ratio, cfg.seed) + third_person(
        tr, cfg.third_person_ratio, cfg.seed
    )
    x_tr = [normalize(ex.text).text for ex in (*tr, *extra)]
    x_dv = [normalize(ex.text).text for ex in dv]
    y_tr, y_dv = [ex.label for ex in (*tr, *extra)], [ex.label for ex in dv]
    log(f"train {len(tr)} posts (+{len(extra)} reported-speech variants), dev {len(dv)} posts -> {out}")

    models: dict[str, object] = {}
    probs: dict[str, np.ndarray] = {}
    if "tfidf" in candidates:
        log("baseline: TF-IDF + logistic regression")
        models["tfidf"] = fit_tfidf(x_tr, y_tr, x_dv, y_dv, cfg, log)
        models["tfidf"].save(out / "tfidf")
        models["tfidf"] = TfidfLogReg.load(out / "tfidf")  # score what was saved, not what is in memory
    if "transformer" in candidates:
        log(f"transformer: {'fine-tuning ' + base if base else 'tiny BERT from scratch'}")
        models["transformer"] = fit_transformer(x_tr, y_tr, x_dv, y_dv, out / "transformer", cfg, base, log)
    for cand, m in models.items():
        probs[cand] = m.predict_proba(x_dv)
    dev = {cand: _victim_f1(y_dv, p) for cand, p in probs.items()}
    weights: dict[str, float] = {}
    if len(models) == 2:
        best_w, best_score = None, None
        for w in np.linspace(0.1, 0.9, 9):
            mix = w * probs["tfidf"] + (1 - w) * probs["transformer"]
            score = _victim_f1(y_dv, mix)
            if best_score is None or score > best_score:
                best_w, best_score = float(w), score
        dev["ensemble"] = best_score
        weights = {"tfidf": round(best_w, 2), "transformer": round(1 - best_w, 2)}
    speed = _throughput(models, x_dv)
    eligible = _eligible(speed, cfg)
    # An ensemble must beat both members clearly to be worth its double cost at inference.
    ranked = sorted(
        (c for c in dev if c in eligible),
        key=lambda c: (dev[c][0] - (0.01 if c == "ensemble" else 0.0), dev[c][1]),
        reverse=True,
    )
    use = ranked[0]
    for cand in dev:
        note = "" if cand in eligible else "  (too slow for the stage budget: not eligible)"
        log(f"dev {cand:<12} victim_report F1 {dev[cand][0]:.3f}  macro F1 {dev[cand][1]:.3f}  "
            f"{speed[cand]:.0f} posts/s{note}")  # fmt: skip
    log(f"selected: {use}")
    chosen = sum(w * probs[c] for c, w in weights.items()) if use == "ensemble" else probs[use]
    bias, tradeoff = choose_victim_bias(y_dv, chosen) if cfg.tune_victim_bias else (0.0, [])
    for row in tradeoff:
        log(f"  victim bias {row['bias']:+.2f}: dev P {row['precision']:.3f} R {row['recall']:.3f} "
            f"F1 {row['f1']:.3f}{'  <- chosen' if row['bias'] == bias else ''}")  # fmt: skip
    version = _data_version(data, cfg.seed)
    config = {
        "format": FORMAT_VERSION, "name": name, "version": version, "use": use,
        "weights": weights if use == "ensemble" else {},
        "candidates": sorted(models), "dev": {c: {"victim_report_f1": round(v[0], 4), "macro_f1": round(v[1], 4)}
                                              for c, v in dev.items()},
        "ensemble_weights": weights, "base": base or "scratch", "train_posts": len(tr), "dev_posts": len(dv),
        "victim_bias": bias, "victim_tradeoff": tradeoff,
        "tfidf_spec": {**models["tfidf"].spec.__dict__, "views": list(models["tfidf"].spec.views),
                       "dense": list(models["tfidf"].spec.dense)} if "tfidf" in models else {},
        "seed": cfg.seed, "augmented_posts": len(extra), "posts_per_s": {c: round(v) for c, v in speed.items()}, "eligible": sorted(eligible),
    }  # fmt: skip
    (out / CONFIG_NAME).write_text(json.dumps(config, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    _write_card(out, config)
    if use == "ensemble":
        Ensemble([(models[c], w) for c, w in weights.items()])  # fails now rather than at load time
    return TrainReport(out, use, dev, weights, version, len(tr), len(dv))


def _write_card(out: Path, config: dict) -> None:
    dev, speed, eligible = config["dev"], config["posts_per_s"], set(config["eligible"])
    names = {"tfidf": "TF-IDF + logistic regression baseline", "transformer": "tiny BERT (ONNX)",
             "ensemble": "weighted ensemble of the baseline and the tiny BERT"}  # fmt: skip
    rows = "\n".join(
        f"| {names.get(c, c)} | {v['victim_report_f1']:.3f} | {v['macro_f1']:.3f} | {speed.get(c, 0)} | "
        f"{'yes' if c in eligible else 'no'} |"
        for c, v in dev.items()
    )
    use = config["use"]
    better = [c for c in dev if c != use and dev[c]["victim_report_f1"] > dev[use]["victim_report_f1"]]
    why = (
        f"The shipped classifier is the {names[use]} because it has the best victim_report F1 on the dev split "
        f"({dev[use]['victim_report_f1']:.3f}) among the candidates fast enough for the 2,000 posts/s budget of the "
        "NLP stage"
    )
    if better:
        why += (
            "; "
            + ", ".join(
                f"the {names[c]} scored {dev[c]['victim_report_f1']:.3f} but classifies only {speed[c]} posts/s"
                for c in better
            )  # fmt: skip
            + f" against {speed[use]} posts/s"
        )
    why += "; the test split was not used to choose."
    tradeoff = config.get("victim_tradeoff") or []
    threshold = (
        "No victim_report decision threshold was tuned: the label is the plain argmax."
        if not tradeoff
        else "The victim_report decision threshold is a shift of its log-odds chosen on the dev split (the best "
        "dev F1; within 0.005 of it, the smallest shift, as dev cannot tell those apart): "
        f"{config['victim_bias']:+.2f}. Precision / recall on dev for every shift tried:\n\n"
        "| shift | dev precision | dev recall | dev F1 |\n| --- | --- | --- | --- |\n"
        + "\n".join(
            f"| {r['bias']:+.2f}{' (chosen)' if r['bias'] == config['victim_bias'] else ''} | {r['precision']:.3f} "
            f"| {r['recall']:.3f} | {r['f1']:.3f} |"
            for r in tradeoff
        )
    )
    spec = config.get("tfidf_spec") or {}
    features = (
        f"Baseline features: char 1-{spec.get('ngram_max', 3)}-gram TF-IDF of the views {', '.join(spec.get('views', []))}"
        + (
            f", plus the dense '{', '.join(spec['dense'])}' block (nlp/features.py) x{spec.get('dense_scale', 1.0)}"
            if spec.get("dense")
            else ""
        )  # fmt: skip
        + f"; train split extended with {config['augmented_posts']} generated reported-speech / third-person posts."
    )
    card = f"""# {config["name"]}@{config["version"]}

{why}

Trained by `incident-monitor nlp train` on {config["train_posts"]} posts (train split), compared on
{config["dev_posts"]} posts (dev split), seed {config["seed"]}, transformer base: {config["base"]}.

| candidate | dev victim_report F1 | dev macro F1 | classifier posts/s (same run) | eligible |
| --- | --- | --- | --- | --- |
{rows}

{features}

{threshold}

Inference runs on numpy / scikit-learn / onnxruntime with the saved fast tokenizer: no torch. Weights are
plain arrays (`tfidf/weights.npz`, `transformer/model.onnx`); nothing is unpickled at load time.
Measure it with `incident-monitor nlp eval --split test` (report the test figures; do not tune on them).
"""
    (out / "model_card.md").write_text(card, encoding="utf-8")
