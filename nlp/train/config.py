"""Settings of `incident-monitor nlp train`, its error type and small helpers every trainer shares."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from nlp.errors import NLPError
from nlp.evaluate import best_labels, label_report

#: Candidates `nlp train` fits unless told otherwise: the char n-gram baseline and the Sudachi words model
#: (together the cascade); the transformer trains on request (--candidates tfidf,words,transformer).
CANDIDATES = ("tfidf", "words")


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
        default=("text", "frame", "event"),
        metadata={"help": "baseline feature views: text, frame (quotes collapsed), event (own event sentences)"},
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
    words_views: tuple[str, ...] = field(
        default=("text", "frame", "words", "event"),
        metadata={"help": "views of the second-stage 'words' candidate: text, frame, Sudachi words and event"},
    )
    cascade_max_share: float = field(
        default=0.4,
        metadata={"help": "largest share of posts the cascade may send to its Sudachi stage (speed budget)"},
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
    victim_bias_offset: float = field(
        default=0.5,
        metadata={
            "help": "added to the victim_report log-odds shift chosen on dev (capped at the grid's +1.0): on real "
            "pages the models under-call victim reports at their dev threshold"
        },
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


def victim_f1(gold: Sequence[str], probs: np.ndarray) -> tuple[float, float]:
    rep = label_report(gold, best_labels(probs))
    return rep["victim_report"]["f1"], rep["macro"]["f1"]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
