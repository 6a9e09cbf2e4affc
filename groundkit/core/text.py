"""Tokenize and encode phrases with word alignment, for any Hugging Face tokenizer and text encoder."""
from __future__ import annotations

import torch

from groundkit.core.types import TextBatch


def encode_with(tokenizer, encoder, phrases: list[str], max_length: int, pass_mask: bool, device, dtype) -> TextBatch:
    """Tokenize to a fixed length and encode; word alignment comes from the fast tokenizer's
    ``word_ids`` and offsets, never from guessing positions."""
    enc = tokenizer(
        list(phrases), padding="max_length", max_length=max_length, truncation=True,
        return_tensors="pt", return_offsets_mapping=True,
    )
    ids = enc["input_ids"].to(device)
    kwargs = {"attention_mask": enc["attention_mask"].to(device)} if pass_mask else {}
    with torch.no_grad():
        out = encoder(ids, **kwargs)
    hidden = out[0] if isinstance(out, (tuple, list)) else getattr(out, "last_hidden_state", out)
    tokens, word_ids, spans = [], [], []
    for b in range(len(phrases)):
        wid = list(enc.word_ids(b))
        offsets = enc["offset_mapping"][b].tolist()
        n_words = 1 + max((w for w in wid if w is not None), default=-1)
        span = [[None, None] for _ in range(n_words)]
        for w, (s, e) in zip(wid, offsets):
            if w is None:
                continue
            span[w][0] = s if span[w][0] is None else min(span[w][0], s)
            span[w][1] = e if span[w][1] is None else max(span[w][1], e)
        tokens.append(tokenizer.convert_ids_to_tokens(enc["input_ids"][b].tolist()))
        word_ids.append(wid)
        spans.append([(int(s), int(e)) for s, e in span])
    special = torch.tensor([[w is None for w in wid] for wid in word_ids])
    return TextBatch(list(phrases), hidden.to(dtype), tokens, word_ids, spans, special, start_index=0)
