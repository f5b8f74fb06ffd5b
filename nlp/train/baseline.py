"""The TF-IDF + logistic-regression trainer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nlp.classify import TfidfLogReg, TfidfSpec
from nlp.corpus import LABELS
from nlp.train.config import Log, TrainConfig, victim_f1


def fit_tfidf(train_texts: Sequence[str], y: Sequence[str], dev_texts: Sequence[str], y_dev: Sequence[str],
              cfg: TrainConfig, log: Log = print, views: Sequence[str] = ()) -> TfidfLogReg:  # fmt: skip
    """TF-IDF (char n-grams; word n-grams for the "words" view) + multinomial logistic regression; C on dev."""
    from scipy.sparse import hstack
    from sklearn.linear_model import LogisticRegression

    spec = TfidfSpec(
        ngram_max=cfg.tfidf_ngram_max, views=tuple(views or cfg.tfidf_views), dense=tuple(cfg.tfidf_dense),
        dense_scale=cfg.tfidf_dense_scale,
    )  # fmt: skip
    vecs = [spec.vectorizer(min_df=2, max_features=cfg.tfidf_max_features, view=v) for v in spec.views]
    x = [vec.fit_transform(spec.view(v, train_texts)) for v, vec in zip(spec.views, vecs, strict=True)]
    x_dev = [vec.transform(spec.view(v, dev_texts)) for v, vec in zip(spec.views, vecs, strict=True)]
    if spec.dense:
        x.append(spec.dense_block(train_texts))
        x_dev.append(spec.dense_block(dev_texts))
    x, x_dev = hstack(x).tocsr(), hstack(x_dev).tocsr()
    best: tuple[tuple[float, float], float, Any] | None = None
    for c in (1.0, 3.0, 10.0, 30.0):
        lr = LogisticRegression(C=c, class_weight="balanced", max_iter=3000, random_state=cfg.seed)
        lr.fit(x, list(y))
        probs = lr.predict_proba(x_dev)[:, [list(lr.classes_).index(lab) for lab in LABELS]]
        score = victim_f1(y_dev, probs)
        log(f"  {'+'.join(spec.views)} C={c:<5} dev victim_report F1 {score[0]:.3f}  macro F1 {score[1]:.3f}")
        if best is None or score > best[0]:
            best = (score, c, lr)
    assert best is not None
    lr = best[2]
    order = [list(lr.classes_).index(lab) for lab in LABELS]
    blocks = [(sorted(vec.vocabulary_, key=vec.vocabulary_.get), vec.idf_) for vec in vecs]
    return TfidfLogReg(spec, blocks, lr.coef_[order], lr.intercept_[order], LABELS)
