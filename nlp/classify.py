"""Text classifiers for victim_report / incident_discussion / irrelevant, loaded lazily and offline.

A model directory (``nlp/models/<name>/`` for the bundled one, or what ``incident-monitor nlp train``
writes) holds ``classifier.json`` naming which of its candidates is used:

    classifier.json     {"name", "version", "use": "tfidf" | "transformer" | "ensemble", "weights", ...}
    tfidf/              TF-IDF + logistic regression: vocabulary, idf and coefficients in one .npz
    transformer/        a transformers model exported to ONNX (model.onnx) + its fast tokenizer.json

Inference needs only numpy, scikit-learn, onnxruntime and tokenizers: never torch. Weights are stored
as plain arrays (``np.load(allow_pickle=False)``), never as pickles, so loading a model runs no code.
A plain Hugging Face checkpoint directory (config.json + weights, no classifier.json) also loads, through
torch, when the ``train`` extra is installed.

All classifiers take texts already normalized by :func:`nlp.normalize.normalize` and return
probabilities in :data:`LABELS` order.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from nlp.corpus import LABELS
from nlp.errors import ModelLoadError
from nlp.features import FEATURE_NAMES, event_view, frame_view, voice_features, word_ngrams, word_tokens

MODELS_DIR = Path(__file__).resolve().parent / "models"
BUNDLED_MODEL = MODELS_DIR / "victim-clf"
CONFIG_NAME = "classifier.json"
FORMAT_VERSION = 1
# Posts per onnxruntime call: big enough to amortize the call, small enough that padding to the longest
# post in a length-sorted batch wastes little.
ONNX_BATCH = 64


class ProbabilisticClassifier(Protocol):
    kind: str

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray: ...


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large logits.

    >>> softmax(np.array([[0.0, 0.0], [1000.0, 0.0]])).round(3).tolist()
    [[0.5, 0.5], [1.0, 0.0]]
    """
    z = z - z.max(axis=1, keepdims=True)
    e: np.ndarray = np.exp(z)
    probs: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return probs


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelLoadError(
            f"{path}: missing; retrain with `incident-monitor nlp train` or pick another --model"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(
            f"{path}: unreadable ({exc}); retrain with `incident-monitor nlp train`"
        ) from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: expected a JSON object; retrain with `incident-monitor nlp train`")
    return data


def _label_order(labels: Sequence[str], where: Path) -> np.ndarray:
    """Column permutation from a model's label order to LABELS order."""
    if sorted(labels) != sorted(LABELS):
        raise ModelLoadError(f"{where}: labels {list(labels)} differ from {list(LABELS)}; retrain the model")
    return np.array([list(labels).index(lab) for lab in LABELS])


# --------------------------------------------------------------------------------------------------
# TF-IDF + logistic regression


@dataclass(frozen=True)
class TfidfSpec:
    """How texts become features; saved beside the weights so training and inference agree."""

    analyzer: str = "char"
    ngram_min: int = 1
    ngram_max: int = 3
    sublinear_tf: bool = True
    # Each view is featurized separately and the blocks are concatenated: "text" is the whole post,
    # "frame" the post with quoted speech collapsed to 「」, so a news story that quotes a victim in the
    # first person still reads as a story about someone else; "event" only the writer's own sentences that
    # tell an event (nlp.features.event_view), so a case told in one sentence of a long text keeps its weight.
    views: tuple[str, ...] = ("text",)
    # Dense blocks appended after the TF-IDF views: "voice" = nlp.features.voice_features (who experienced
    # the event), multiplied by dense_scale so their strength against the L2-normalized TF-IDF rows is a
    # setting chosen on dev rather than an accident of units.
    dense: tuple[str, ...] = ()
    dense_scale: float = 1.0

    def dense_width(self) -> int:
        return sum(len(FEATURE_NAMES) for _ in self.dense)

    def dense_block(self, texts: Sequence[str]) -> Any:
        from scipy.sparse import csr_matrix

        blocks = []
        for name in self.dense:
            if name != "voice":
                raise ModelLoadError(f"unknown dense feature block {name!r}; retrain the model")
            blocks.append(voice_features(texts) * np.float32(self.dense_scale))
        return csr_matrix(np.hstack(blocks)) if blocks else None

    def view(self, name: str, texts: Sequence[str]) -> list[Any]:
        if name == "text":
            return list(texts)
        if name == "frame":
            return [frame_view(t) for t in texts]
        if name == "event":
            return [event_view(t) for t in texts]
        if name == "words":  # Sudachi runs here, and only here
            return [word_tokens(t) for t in texts]
        raise ModelLoadError(f"unknown tfidf view {name!r}; retrain the model")

    def vectorizer(self, vocabulary: dict[str, int] | None = None, view: str = "text", **kwargs: Any) -> Any:
        from sklearn.feature_extraction.text import TfidfVectorizer

        if view == "words":
            return TfidfVectorizer(
                analyzer=word_ngrams, sublinear_tf=self.sublinear_tf, vocabulary=vocabulary, dtype=np.float32,
                **kwargs,
            )  # fmt: skip
        return TfidfVectorizer(
            analyzer=self.analyzer, ngram_range=(self.ngram_min, self.ngram_max),
            sublinear_tf=self.sublinear_tf, lowercase=False, vocabulary=vocabulary, dtype=np.float32, **kwargs,
        )  # fmt: skip


def tfidf_rows(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int], idf: np.ndarray,
               sublinear: bool) -> Any:
    """Term occurrences (one (row, column) pair each) as L2-normalised TF-IDF rows, as scikit-learn's
    ``TfidfVectorizer`` computes them (raw or ``1 + log`` counts, times idf, unit length per row)."""
    from scipy.sparse import csr_matrix

    x = csr_matrix((np.ones(len(cols), dtype=np.float32), (rows, cols)), shape=shape)
    x.sum_duplicates()
    if sublinear:
        np.log(x.data, out=x.data)
        x.data += 1.0
    x = x.multiply(idf).tocsr()
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return csr_matrix(x.multiply(1.0 / norms[:, None]))


class CharNgramTfidf:
    """TF-IDF of char 1..3-grams, vectorized with numpy: the same matrix as scikit-learn's transform.

    scikit-learn builds every n-gram as a Python string; here a text becomes an array of code points and
    each n-gram an exact 63-bit key (code points + 1 fit in 21 bits, three of them in 63), looked up in
    the sorted keys of the vocabulary. No hashing collisions: a key is the n-gram itself.

    >>> v = CharNgramTfidf(["a", "ab", "b", "abc"], np.ones(4))
    >>> v.transform(["ab  ab", ""]).toarray().astype(float).round(3).tolist()
    [[0.577, 0.577, 0.577, 0.0], [0.0, 0.0, 0.0, 0.0]]
    """

    MAX_N = 3
    _SPACES = re.compile(r"\s\s+")  # scikit-learn collapses whitespace runs before char n-grams

    def __init__(self, vocabulary: Sequence[str], idf: np.ndarray, sublinear_tf: bool = True) -> None:
        keys = np.array([self._key(term) for term in vocabulary], dtype=np.uint64)
        order = np.argsort(keys)
        self._keys = keys[order]
        self._columns = order.astype(np.int64)
        self._idf = np.asarray(idf, dtype=np.float32)
        self._sublinear = sublinear_tf
        self.n_features = len(vocabulary)

    @staticmethod
    def _key(term: str) -> int:
        if not 1 <= len(term) <= CharNgramTfidf.MAX_N:
            raise ModelLoadError(f"tfidf vocabulary term {term!r} is not a char 1..3-gram; retrain the model")
        key = 0
        for ch in term:
            key = (key << 21) | (ord(ch) + 1)
        return key

    def transform(self, texts: Sequence[str]) -> Any:

        n_docs = len(texts)
        docs = [self._SPACES.sub(" ", t) for t in texts]
        lengths = np.fromiter((len(d) for d in docs), dtype=np.int64, count=n_docs)
        # One array for the whole batch; an n-gram is kept only when it starts and ends in the same post.
        codes = np.frombuffer("".join(docs).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        codes = codes.astype(np.uint64) + np.uint64(1)
        doc = np.repeat(np.arange(n_docs, dtype=np.int64), lengths)
        keys, rows = [codes], [doc]
        for n in range(2, self.MAX_N + 1):
            if len(codes) < n:
                break
            same = doc[: len(doc) - n + 1] == doc[n - 1 :]
            key = codes[: len(codes) - n + 1].copy()
            for j in range(1, n):
                key = (key << np.uint64(21)) | codes[j : len(codes) - n + 1 + j]
            keys.append(key[same])
            rows.append(doc[: len(doc) - n + 1][same])
        all_keys, all_rows = np.concatenate(keys), np.concatenate(rows)
        pos = np.searchsorted(self._keys, all_keys)
        pos[pos == len(self._keys)] = 0
        hit = self._keys[pos] == all_keys if len(self._keys) else np.zeros(len(all_keys), dtype=bool)
        cols = self._columns[pos[hit]]
        return tfidf_rows(all_rows[hit], cols, (n_docs, self.n_features), self._idf, self._sublinear)


class WordNgramTfidf:
    """TF-IDF of word 1..3-grams (joined by spaces), the same matrix as scikit-learn's with ``word_ngrams``.

    >>> v = WordNgramTfidf(["私", "私 の", "口座"], np.ones(3))
    >>> v.transform([["私", "の", "口座"], []]).toarray().astype(float).round(3).tolist()
    [[0.577, 0.577, 0.577], [0.0, 0.0, 0.0]]
    """

    def __init__(self, vocabulary: Sequence[str], idf: np.ndarray, sublinear_tf: bool = True) -> None:
        self._columns = {term: i for i, term in enumerate(vocabulary)}
        self._idf = np.asarray(idf, dtype=np.float32)
        self._sublinear = sublinear_tf
        self.n_features = len(vocabulary)

    def transform(self, docs: Sequence[Sequence[str]]) -> Any:

        rows: list[int] = []
        cols: list[int] = []
        columns = self._columns
        for i, tokens in enumerate(docs):
            for gram in word_ngrams(tokens):
                col = columns.get(gram)
                if col is not None:
                    rows.append(i)
                    cols.append(col)
        return tfidf_rows(np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64),
                          (len(docs), self.n_features), self._idf, self._sublinear)


class TfidfLogReg:
    """Char n-gram TF-IDF and a multinomial logistic regression, stored as arrays (no pickle)."""

    kind = "tfidf"

    def __init__(self, spec: TfidfSpec, blocks: Sequence[tuple[Sequence[str], np.ndarray]], coef: np.ndarray,
                 intercept: np.ndarray, labels: Sequence[str] = LABELS) -> None:  # fmt: skip
        """``blocks`` holds one (vocabulary, idf) pair per view of ``spec.views``, in order."""
        if len(blocks) != len(spec.views):
            raise ModelLoadError(
                f"tfidf: {len(blocks)} feature blocks for views {spec.views}; retrain the model"
            )
        self.spec = spec
        self.labels = tuple(labels)
        self._blocks = [(list(vocab), np.asarray(idf, dtype=np.float32)) for vocab, idf in blocks]
        self._vectorizers = [
            self._vectorizer(view, vocab, idf) for view, (vocab, idf) in zip(spec.views, self._blocks, strict=True)
        ]
        order = _label_order(self.labels, Path("tfidf"))
        self._coef_t = np.ascontiguousarray(np.asarray(coef, dtype=np.float32)[order].T)
        self._intercept = np.asarray(intercept, dtype=np.float32)[order]
        if self._coef_t.shape[0] != sum(len(v) for v, _ in self._blocks) + spec.dense_width():
            raise ModelLoadError("tfidf: coefficient rows disagree with the vocabularies; retrain the model")

    @property
    def uses_sudachi(self) -> bool:
        return "words" in self.spec.views

    def _vectorizer(self, view: str, vocab: list[str], idf: np.ndarray) -> Any:
        spec = self.spec
        if view == "words":
            return WordNgramTfidf(vocab, idf, spec.sublinear_tf)
        if spec.analyzer == "char" and spec.ngram_min == 1 and spec.ngram_max <= CharNgramTfidf.MAX_N:
            return CharNgramTfidf(vocab, idf, spec.sublinear_tf)
        vec = spec.vectorizer({term: i for i, term in enumerate(vocab)})  # slower, pure-Python analyzer
        vec.idf_ = idf
        return vec

    def features(self, texts: Sequence[str]) -> Any:
        from scipy.sparse import hstack

        mats = [
            vec.transform(self.spec.view(v, texts))
            for v, vec in zip(self.spec.views, self._vectorizers, strict=True)
        ]
        dense = self.spec.dense_block(texts)
        if dense is not None:
            mats.append(dense)
        return mats[0] if len(mats) == 1 else hstack(mats).tocsr()

    def decision_function(self, texts: Sequence[str]) -> np.ndarray:
        scores: np.ndarray = np.asarray(self.features(texts) @ self._coef_t) + self._intercept
        return scores

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, len(LABELS)), dtype=np.float32)
        return softmax(self.decision_function(texts))

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {"coef": self._coef_t.T, "intercept": self._intercept}
        for i, (vocab, idf) in enumerate(self._blocks):
            arrays[f"vocabulary_{i}"] = np.array(vocab, dtype=str)
            arrays[f"idf_{i}"] = idf
        np.savez_compressed(directory / "weights.npz", **arrays)  # type: ignore[arg-type]  # numpy stubs: **kwds vs allow_pickle
        spec = {**self.spec.__dict__, "views": list(self.spec.views), "dense": list(self.spec.dense)}
        meta = {"kind": self.kind, "labels": list(LABELS), "spec": spec}
        if self.spec.dense:
            meta["dense_features"] = list(FEATURE_NAMES)
        (directory / "tfidf.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> TfidfLogReg:
        meta = _read_json(directory / "tfidf.json")
        try:
            raw = dict(meta.get("spec", {}))
            raw["views"] = tuple(raw.get("views", ("text",)))
            raw["dense"] = tuple(raw.get("dense", ()))
            spec = TfidfSpec(**raw)
        except TypeError as exc:
            raise ModelLoadError(f"{directory / 'tfidf.json'}: bad spec ({exc}); retrain the model") from None
        if spec.dense and meta.get("dense_features") != list(FEATURE_NAMES):
            raise ModelLoadError(
                f"{directory / 'tfidf.json'}: trained with other voice features than nlp/features.py has; "
                "retrain with `incident-monitor nlp train`"
            )
        path = directory / "weights.npz"
        try:
            with np.load(path, allow_pickle=False) as arrays:
                blocks = [
                    (arrays[f"vocabulary_{i}"].tolist(), arrays[f"idf_{i}"]) for i in range(len(spec.views))
                ]
                coef, intercept = arrays["coef"], arrays["intercept"]
        except FileNotFoundError:
            raise ModelLoadError(f"{path}: missing; retrain with `incident-monitor nlp train`") from None
        except (OSError, ValueError, KeyError) as exc:
            raise ModelLoadError(
                f"{path}: unreadable weights ({exc}); retrain with `incident-monitor nlp train`"
            ) from None
        if any(idf.shape != (len(vocab),) for vocab, idf in blocks):
            raise ModelLoadError(f"{path}: array shapes disagree with the vocabulary; retrain the model")
        return cls(spec, blocks, coef, intercept, meta.get("labels", LABELS))


# --------------------------------------------------------------------------------------------------
# transformers model exported to ONNX


class OnnxTransformer:
    """A sequence classifier exported to ONNX, run by onnxruntime with its saved fast tokenizer."""

    kind = "transformer"

    def __init__(self, directory: Path, threads: int | None = None) -> None:
        meta = _read_json(directory / "transformer.json")
        self.max_length = int(meta.get("max_length", 128))
        self.labels = tuple(meta.get("labels", LABELS))
        self._order = _label_order(self.labels, directory)
        self._input_names: list[str] = []
        self._tokenizer = self._load_tokenizer(directory)
        self._session = self._load_session(directory / "model.onnx", threads)
        self._input_names = [i.name for i in self._session.get_inputs()]

    def _load_tokenizer(self, directory: Path) -> Any:
        path = directory / "tokenizer.json"
        if path.exists():
            from tokenizers import Tokenizer

            try:
                tok = Tokenizer.from_file(str(path))
            except Exception as exc:  # the Rust side raises a bare Exception on bad JSON
                raise ModelLoadError(f"{path}: unreadable tokenizer ({exc}); retrain the model") from None
            tok.enable_truncation(self.max_length)
            pad_id = tok.token_to_id("[PAD]")
            tok.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]")
            return tok
        # Slow-only tokenizers (e.g. MeCab-based Japanese BERTs) come through transformers.
        try:
            from transformers import AutoTokenizer

            return AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
        except Exception as exc:
            raise ModelLoadError(f"{directory}: no usable tokenizer ({exc}); retrain the model") from None

    @staticmethod
    def _load_session(path: Path, threads: int | None) -> Any:
        import onnxruntime as ort

        if not path.exists():
            raise ModelLoadError(f"{path}: missing; retrain with `incident-monitor nlp train`")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or 0  # the caller passes [nlp] onnx_threads (NLP_ONNX_THREADS)
        opts.log_severity_level = 3
        try:
            return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ModelLoadError(f"{path}: onnxruntime cannot load it ({exc}); retrain the model") from None

    def _encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        if hasattr(self._tokenizer, "encode_batch"):
            encs = self._tokenizer.encode_batch(list(texts))
            ids = np.array([e.ids for e in encs], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encs], dtype=np.int64)
            return ids, mask
        out = self._tokenizer(list(texts), truncation=True, max_length=self.max_length, padding=True,
                              return_tensors="np")  # fmt: skip
        return out["input_ids"].astype(np.int64), out["attention_mask"].astype(np.int64)

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), len(LABELS)), dtype=np.float32)
        # Sorting by length keeps padding small inside each batch.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), ONNX_BATCH):
            idx = order[start : start + ONNX_BATCH]
            ids, mask = self._encode([texts[i] for i in idx])
            feeds = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self._input_names:
                feeds["token_type_ids"] = np.zeros_like(ids)
            (logits,) = self._session.run(
                ["logits"], {k: v for k, v in feeds.items() if k in self._input_names}
            )
            out[idx] = logits[:, self._order]
        return out

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, len(LABELS)), dtype=np.float32)
        return softmax(self.logits(texts))


class TorchCheckpoint:
    """A plain Hugging Face checkpoint directory run with torch (only with the ``train`` extra)."""

    kind = "hf-torch"

    def __init__(self, directory: Path) -> None:
        try:
            import torch
            from transformers import AutoModelForSequenceClassification, AutoTokenizer
        except ImportError:
            raise ModelLoadError(
                f"{directory}: a plain Hugging Face checkpoint needs torch; install it with "
                "`pip install 'incident-monitor[train]'` or export it with `incident-monitor nlp train --base`"
            ) from None
        try:
            self._tok = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
            self._model = AutoModelForSequenceClassification.from_pretrained(
                str(directory), local_files_only=True
            )
        except Exception as exc:
            raise ModelLoadError(f"{directory}: cannot load the checkpoint ({exc})") from None
        id2label = self._model.config.id2label
        self._order = _label_order([id2label[i] for i in range(len(id2label))], directory)
        self._model.eval()
        self._torch = torch

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, len(LABELS)), dtype=np.float32)
        rows = []
        with self._torch.no_grad():
            for start in range(0, len(texts), 32):
                enc = self._tok(list(texts[start : start + 32]), truncation=True, max_length=256, padding=True,
                                return_tensors="pt")  # fmt: skip
                rows.append(self._model(**enc).logits.float().numpy()[:, self._order])
        return softmax(np.concatenate(rows))


class Ensemble:
    """Weighted average of member probabilities (weights chosen on the dev split)."""

    kind = "ensemble"

    def __init__(self, members: Sequence[tuple[ProbabilisticClassifier, float]]) -> None:
        total = sum(w for _, w in members)
        self.members = [(m, w / total) for m, w in members]

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        probs = np.zeros((len(texts), len(LABELS)), dtype=np.float32)
        for member, weight in self.members:
            probs += weight * member.predict_proba(texts)
        return probs


class Cascade:
    """A fast first stage for every post; the second stage reads the posts the first is unsure of.

    A post goes on when the first stage's highest probability is below ``confidence`` (chosen on the dev
    split by ``nlp train``); its probabilities are then the second stage's. The second stage reads words
    (Sudachi), so Sudachi runs only for those posts: :meth:`predict_routed` says which they were.
    """

    kind = "cascade"

    def __init__(self, first: TfidfLogReg, second: TfidfLogReg, confidence: float) -> None:
        self.first, self.second, self.confidence = first, second, float(confidence)

    def predict_routed(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        probs = self.first.predict_proba(texts)
        routed = probs.max(axis=1) < self.confidence if len(texts) else np.zeros(0, dtype=bool)
        if routed.any():
            probs = probs.copy()
            probs[routed] = self.second.predict_proba([t for t, r in zip(texts, routed, strict=True) if r])
        return probs, routed

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return self.predict_routed(texts)[0]


def routed_probs(first: np.ndarray, second: np.ndarray, confidence: float) -> np.ndarray:
    """What a Cascade returns, from both stages' probabilities computed for every post (for tuning).

    >>> routed_probs(np.array([[0.9, 0.05, 0.05], [0.5, 0.3, 0.2]]), np.zeros((2, 3)), 0.8).tolist()
    [[0.9, 0.05, 0.05], [0.0, 0.0, 0.0]]
    """
    routed = first.max(axis=1) < confidence
    return np.where(routed[:, None], second, first)


# --------------------------------------------------------------------------------------------------
# model directories


@dataclass
class TextClassifier:
    """The classifier a model directory selects, with its identity for annotations."""

    name: str
    version: str
    use: str
    model: ProbabilisticClassifier
    path: Path
    # Added to the victim_report log-probability before the argmax: the decision threshold chosen on the
    # dev split by `nlp train` (0 = plain argmax). Scores stay probabilities and the label stays their argmax.
    victim_bias: float = 0.0

    @property
    def model_version(self) -> str:
        return f"{self.name}@{self.version}"

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return shift_victim(self.model.predict_proba(texts), self.victim_bias)

    def predict(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities and, per post, whether the Sudachi dictionary ran for it (provenance)."""
        if isinstance(self.model, Cascade):
            probs, routed = self.model.predict_routed(texts)
        else:
            probs = self.model.predict_proba(texts)
            routed = np.full(len(texts), bool(getattr(self.model, "uses_sudachi", False)))
        return shift_victim(probs, self.victim_bias), routed

    @property
    def tokenizer(self) -> str:
        """What splits text for the model that runs first: char n-grams or a subword tokenizer."""
        first = self.model.first if isinstance(self.model, Cascade) else self.model
        return {"tfidf": "char-ngrams", "transformer": "subword"}.get(getattr(first, "kind", ""), "mixed")


def shift_victim(probs: np.ndarray, bias: float) -> np.ndarray:
    """Probabilities with ``bias`` added to the victim_report log-odds (a prior / threshold shift).

    >>> shift_victim(np.array([[0.5, 0.25, 0.25]]), float(np.log(1 / 3))).round(3).tolist()
    [[0.25, 0.375, 0.375]]
    """
    if not bias or len(probs) == 0:
        return probs
    logp = np.log(np.clip(probs, 1e-12, 1.0))
    logp[:, LABELS.index("victim_report")] += bias
    return softmax(logp).astype(np.float32)


def load_candidate(directory: Path, candidate: str, threads: int | None = None) -> ProbabilisticClassifier:
    """One candidate ("tfidf" or "transformer") stored inside a model directory; ``threads`` for ONNX."""
    sub = directory / candidate
    if candidate in ("tfidf", "words"):
        return TfidfLogReg.load(sub)
    if candidate == "transformer":
        return OnnxTransformer(sub, threads)
    raise ModelLoadError(f"{directory / CONFIG_NAME}: unknown candidate {candidate!r}; retrain the model")


def load_classifier(
    model: str | Path | None = None, *, use: str | None = None, threads: int | None = None
) -> TextClassifier:
    """Load the bundled model (None), or a model directory written by ``nlp train``.

    ``use`` overrides the directory's choice ("tfidf", "transformer", "ensemble") for side-by-side eval;
    ``threads`` is the ONNX Runtime thread count (None or 0: onnxruntime decides).
    """
    directory = Path(model) if model is not None else BUNDLED_MODEL
    if not directory.is_dir():
        raise ModelLoadError(
            f"model directory {directory} not found: pass --model DIR written by `incident-monitor nlp train`"
        )
    if not (directory / CONFIG_NAME).exists() and (directory / "config.json").exists():
        return TextClassifier(directory.name, "checkpoint", "hf-torch", TorchCheckpoint(directory), directory)
    cfg = _read_json(directory / CONFIG_NAME)
    if cfg.get("format") != FORMAT_VERSION:
        raise ModelLoadError(
            f"{directory / CONFIG_NAME}: format {cfg.get('format')!r} is not {FORMAT_VERSION}; retrain"
        )
    choice = use or cfg.get("use")
    # "weights" is set when the directory ships the ensemble; "ensemble_weights" lets eval try it anyway.
    weights: dict[str, Any] = cfg.get("weights") or cfg.get("ensemble_weights") or {}
    if choice == "ensemble":
        if not weights:
            raise ModelLoadError(f"{directory / CONFIG_NAME}: an ensemble needs 'weights'; retrain the model")
        clf: ProbabilisticClassifier = Ensemble(
            [(load_candidate(directory, c, threads), float(w)) for c, w in weights.items()]
        )
    elif choice == "cascade":
        spec = cfg.get("cascade") or {}
        try:
            first, second = load_candidate(directory, spec["first"]), load_candidate(directory, spec["second"])
            clf = Cascade(first, second, float(spec["confidence"]))  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError):
            raise ModelLoadError(
                f"{directory / CONFIG_NAME}: a cascade needs 'cascade': first, second, confidence; retrain"
            ) from None
    elif isinstance(choice, str):
        clf = load_candidate(directory, choice, threads)
    else:
        raise ModelLoadError(f"{directory / CONFIG_NAME}: 'use' is missing; retrain the model")
    # The threshold was chosen for the directory's own choice; a candidate asked for by `use` runs plain.
    bias = cfg.get("victim_bias", 0.0) if choice == cfg.get("use") else 0.0
    if not isinstance(bias, (int, float)) or isinstance(bias, bool) or not np.isfinite(bias):
        raise ModelLoadError(f"{directory / CONFIG_NAME}: 'victim_bias' must be a number; retrain the model")
    return TextClassifier(
        str(cfg.get("name", directory.name)), str(cfg.get("version", "0")), choice, clf, directory,
        float(bias),
    )  # fmt: skip
