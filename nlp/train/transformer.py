"""The transformer trainer: a tiny BERT from scratch, or a fine-tuned Hugging Face model; exported to ONNX."""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nlp.classify import OnnxTransformer
from nlp.corpus import LABELS
from nlp.train.config import Log, TrainConfig, TrainError, victim_f1
from nlp.train.export import export_onnx
from nlp.train.tokenizer import train_tokenizer


def _require_torch() -> Any:
    try:
        import torch
    except ImportError:
        raise TrainError(
            "training the transformer needs torch: pip install 'incident-monitor[train]' "
            "(CPU build: pip install torch --index-url https://download.pytorch.org/whl/cpu)"
        ) from None
    return torch


def _load_base(base: str, log: Log) -> Any:
    """Tokenizer and model of a Hugging Face id or local checkpoint; offline when it is local."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    offline = Path(base).exists() or os.environ.get("HF_HUB_OFFLINE") == "1"
    last: Exception | None = None
    for local_only in [True] if offline else [False, True]:
        try:
            tok = AutoTokenizer.from_pretrained(base, local_files_only=local_only)
            model = AutoModelForSequenceClassification.from_pretrained(
                base, local_files_only=local_only, num_labels=len(LABELS), id2label=dict(enumerate(LABELS)),
                label2id={lab: i for i, lab in enumerate(LABELS)}, ignore_mismatched_sizes=True,
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
        tok = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]  # transformers: untyped __init__
            tokenizer_object=raw, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
            mask_token="[MASK]", model_max_length=cfg.max_length,
        )  # fmt: skip
        bert = BertConfig(  # type: ignore[call-arg]  # transformers: num_labels goes through **kwargs
            vocab_size=raw.get_vocab_size(), hidden_size=cfg.hidden_size, num_hidden_layers=cfg.layers,
            num_attention_heads=max(1, cfg.hidden_size // 32), intermediate_size=cfg.hidden_size * 2,
            max_position_embeddings=cfg.max_length + 2, type_vocab_size=1, num_labels=len(LABELS),
            id2label=dict(enumerate(LABELS)), label2id={lab: i for i, lab in enumerate(LABELS)},
            hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
        )  # fmt: skip
        model: Any = BertForSequenceClassification(bert)
        lr = cfg.learning_rate or 1e-3
    else:
        tok, model = _load_base(base, log)
        lr = cfg.learning_rate or 3e-5

    def encode(texts: Sequence[str]) -> Any:
        return tok(list(texts), truncation=True, max_length=cfg.max_length)["input_ids"]

    train_ids, dev_ids = encode(train_texts), encode(dev_texts)
    y_idx = torch.tensor([LABELS.index(v) for v in y])
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0

    def batch(ids_list: list[list[int]]) -> Any:
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
    best: tuple[tuple[float, float], dict[str, Any]] | None = None
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
        score = victim_f1(y_dev, predict(dev_ids)) if dev_ids else (0.0, 0.0)
        log(f"  transformer epoch {epoch + 1}/{cfg.epochs} loss {total / max(1, len(order)):.3f} "
            f"dev victim_report F1 {score[0]:.3f} macro F1 {score[1]:.3f} ({time.time() - t0:.0f}s)")  # fmt: skip
        if best is None or score > best[0]:
            best = (score, {k: v.detach().clone() for k, v in model.state_dict().items()})
    assert best is not None
    model.load_state_dict(best[1])
    model.eval()
    export_onnx(torch, model, out_dir / "model.onnx")
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
