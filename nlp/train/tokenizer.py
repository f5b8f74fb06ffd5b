"""The subword tokenizer of a transformer trained from scratch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def train_tokenizer(texts: Sequence[str], vocab_size: int, max_length: int) -> Any:
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
