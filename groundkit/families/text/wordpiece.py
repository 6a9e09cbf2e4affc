"""The BERT WordPiece tokenizer, built from ``vocab.txt`` without remote code.

A module of its own because the tokenizer is read from a different folder than the encoder weights and its
checks (special tokens present, the vocabulary really taken) have nothing to do with the state-dict layout.
Under transformers 5 ``BertTokenizer(vocab_file=...)`` silently ignores the file (the argument is now
``vocab=``); :func:`load_wordpiece_tokenizer` passes the vocabulary explicitly and verifies that it took effect.
"""
from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from typing import Any

from groundkit.families.common import quiet_transformers

__all__ = ["load_wordpiece_tokenizer"]


def _token_str(value: Any, default: str) -> str:
    if value is None:
        return default
    if isinstance(value, dict):
        return str(value.get("content", default))
    return str(value)


def _read_vocab(path: Path) -> dict[str, int]:
    vocab: dict[str, int] = {}
    with open(path, encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            tok = line.rstrip("\n").rstrip("\r")
            vocab[tok] = i  # same rule as transformers' load_vocab (a duplicate keeps its last index)
    if not vocab:
        raise ValueError(f"{path} is empty")
    return vocab


def load_wordpiece_tokenizer(folder: str | os.PathLike, model_max_length: int | None = None):
    """A fast (``tokenizers``-backed) BERT WordPiece tokenizer from ``vocab.txt`` + ``tokenizer_config.json``.

    Reads ``do_lower_case`` (default True), ``strip_accents``, ``tokenize_chinese_chars``, the special tokens
    and ``model_max_length`` (default 512); ``tokenizer_class``/``auto_map`` entries are ignored.
    """
    folder = Path(folder)
    vocab_path = folder / "vocab.txt"
    if not vocab_path.is_file():
        raise FileNotFoundError(f"WordPiece vocabulary not found: {vocab_path}")
    vocab = _read_vocab(vocab_path)
    tcfg: dict[str, Any] = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):  # tokenizer_config wins
        p = folder / name
        if p.is_file():
            try:
                tcfg.update(json.loads(p.read_text(encoding="utf-8")))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{p} is not valid JSON: {exc}") from exc
    specials = {
        name: _token_str(tcfg.get(name), default)
        for name, default in (
            ("unk_token", "[UNK]"),
            ("sep_token", "[SEP]"),
            ("pad_token", "[PAD]"),
            ("cls_token", "[CLS]"),
            ("mask_token", "[MASK]"),
        )
    }
    missing = [t for t in specials.values() if t not in vocab]
    if missing:
        raise ValueError(f"{vocab_path} lacks the special token(s) {missing}")
    max_len = model_max_length if model_max_length is not None else tcfg.get("model_max_length", 512)
    if not isinstance(max_len, int) or max_len > 1_000_000:  # "1e30" = unset in old configs
        max_len = 512
    common = dict(
        do_lower_case=bool(tcfg.get("do_lower_case", True)),
        strip_accents=tcfg.get("strip_accents"),
        tokenize_chinese_chars=bool(tcfg.get("tokenize_chinese_chars", True)),
        model_max_length=int(max_len),
        **specials,
    )

    from transformers import BertTokenizerFast

    quiet_transformers()
    params = inspect.signature(BertTokenizerFast.__init__).parameters
    if "vocab" in params:  # transformers >= 5: the vocabulary is passed as a dict (vocab_file is ignored)
        tok = BertTokenizerFast(vocab=dict(vocab), **common)
    else:  # transformers 4.x
        tok = BertTokenizerFast(vocab_file=str(vocab_path), **common)

    # Guard against silently getting a default/empty vocabulary.
    got = tok.get_vocab()
    if len(got) < len(vocab) or any(got.get(t) != i for t, i in vocab.items()):
        raise RuntimeError(f"the tokenizer built from {vocab_path} does not use that vocabulary")
    if not getattr(tok, "is_fast", False):
        raise RuntimeError("a fast tokenizer (word_ids/offsets) is required")
    return tok
