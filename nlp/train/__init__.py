"""Train the classifier: a TF-IDF + logistic-regression baseline and a small transformers model.

``incident-monitor nlp train`` calls :func:`train` (``nlp.train.run``). One module per job:

    config.py       TrainConfig (the settings), TrainError, shared helpers
    augment.py      generated train posts (reported speech, third-person retellings, invariance edits)
    baseline.py     the TF-IDF + logistic-regression trainer
    tokenizer.py    the subword tokenizer of a transformer trained from scratch
    transformer.py  the tiny BERT (or a fine-tuned Hugging Face model) trainer
    export.py       ONNX export, so inference never needs torch
    select.py       candidate speed, the speed rule and the victim_report threshold chosen on dev
    card.py         the model card
    run.py          the whole run

Training needs the ``train`` extra (torch) only for the transformer.
"""

from __future__ import annotations

from nlp.train.augment import _FIRST_PERSON, reported_speech, third_person
from nlp.train.config import TrainConfig, TrainError
from nlp.train.run import TrainReport, train
from nlp.train.select import BIAS_F1_TOLERANCE, BIAS_GRID, choose_victim_bias
from nlp.train.tokenizer import train_tokenizer

__all__ = [
    "BIAS_F1_TOLERANCE", "BIAS_GRID", "TrainConfig", "TrainError", "TrainReport", "_FIRST_PERSON",
    "choose_victim_bias", "reported_speech", "third_person", "train", "train_tokenizer",
]  # fmt: skip
