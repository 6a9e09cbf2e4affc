"""Token filters: which key tokens of a phrase are averaged into its heatmap (docs/protocols.md §4).

A filter turns one phrase of a :class:`~groundkit.core.types.TextBatch` into a set of token
positions and a uniform weight vector over them. Specs (strings, as they appear in recipes):

``all``
    Every token of the phrase: all sub-tokens of every word, punctuation included (Vilouras: positions
    1..n-2 of the unpadded phrase). Start/end/pad tokens never count.
``lexical``
    Adjectives, nouns and verbs; the FIRST sub-token of each kept word (Nuetzel, published with the
    ScispaCy tagger). See "Lexical backends" below. Falls back to ``all`` when the phrase has no
    content word.
``disease``
    All sub-tokens of the words containing a keyword of the sample's MS-CXR category
    (:data:`DISEASE_KEYWORDS`, case-insensitive substring of the word). Without a category (a phrase typed
    by hand, no MS-CXR label) the keywords of every category the phrase names are used, so the finding
    words are kept and side/location words are not. Falls back to ``all`` when no word matches, or the
    category has no keyword list.
``words:w1,w2`` (also ``words=w1,w2``)
    Explicit words, all their sub-tokens, every occurrence. An entry may span several tokenizer words
    ("pleural effusion", "right-sided"); it must start and end on word boundaries. A missing entry is
    an error that names it.
``start``
    The start token only (BBM's "image bias", Nuetzel eq. 2).

Every fallback is recorded in :class:`TokenSelection.fallback` and shown by :func:`explain`.

Words are the tokenizer's words (``TextBatch.word_ids`` / ``word_spans``, from a fast tokenizer's
``word_ids()`` and offsets): sub-tokens are found through ``word_ids``, never by position guessing,
and the POS tagger's tokens are matched to those words by character spans.

Lexical backends (spaCy tagger or a function-word list): see :mod:`groundkit.engine.lexical`.

Differences from the published code (kept deliberately): the published disease filter min-max
normalizes each matched word's map and averages the words; here weights are uniform over the selected
tokens (a linear filter). The published lexical filter mapped tagger tokens to tokenizer words by
position after whitespace splitting; here the mapping is by character span.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

import torch

from groundkit.core.types import TextBatch
from groundkit.engine.lexical import (
    AUXILIARIES,
    FUNCTION_WORDS,
    LY_NON_ADVERBS,
    content_words,
    is_content_word,
    lexical_backend,
    lexical_backend_info,
)

__all__ = [
    "AUXILIARIES",
    "DISEASE_KEYWORDS",
    "FUNCTION_WORDS",
    "LY_NON_ADVERBS",
    "SPECS",
    "TokenSelection",
    "content_words",
    "disease_keywords",
    "explain",
    "is_content_word",
    "lexical_backend",
    "lexical_backend_info",
    "select_tokens",
    "selected_positions",
    "token_weights",
]

SPECS = ("all", "lexical", "disease", "words:<w1>,<w2>,...", "start")

# --------------------------------------------------------------------------------------------
# Disease keywords (MS-CXR categories). Case-insensitive substring of a tokenizer word.
# --------------------------------------------------------------------------------------------
DISEASE_KEYWORDS: dict[str, tuple[str, ...]] = {
    "Atelectasis": ("atelecta",),  # atelectasis, atelectatic, atelectases
    "Cardiomegaly": ("cardiomegal", "heart", "cardiac"),
    "Consolidation": ("consolidat",),  # consolidation(s), consolidative, consolidated
    "Edema": ("edema", "oedema"),
    "Lung Opacity": ("opacit", "opacif"),  # opacity, opacities, opacification, opacified
    "Pleural Effusion": ("effusion", "pleural"),
    "Pneumonia": ("pneumonia",),
    "Pneumothorax": ("pneumothora",),  # pneumothorax, pneumothoraces
}


def _norm_category(name: str) -> str:
    return " ".join(re.sub(r"[_\-]+", " ", name).lower().split())


_CATEGORY_INDEX = {_norm_category(k): v for k, v in DISEASE_KEYWORDS.items()}


def disease_keywords(category: str | None) -> tuple[str, ...]:
    """Keywords of an MS-CXR category ("Lung Opacity", "lung_opacity", ... all work); () if unknown."""
    if category is None:
        return ()
    return _CATEGORY_INDEX.get(_norm_category(category), ())


# --------------------------------------------------------------------------------------------
# Selection
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TokenSelection:
    """The outcome of one token filter on one phrase."""

    spec: str  # as requested
    kind: str  # "all" | "lexical" | "disease" | "words" | "start"
    n_tokens: int  # N, length of the (padded) sequence
    positions: tuple[int, ...]  # selected token positions, ascending
    tokens: tuple[str, ...]  # token strings at those positions
    words: tuple[str, ...]  # the selected words (in phrase order), empty for "start"
    fallback: str | None = None  # why the filter fell back to "all", None if it did not
    backend: str | None = None  # lexical backend (lexical only)
    extra: dict = field(default_factory=dict)

    @property
    def resolved(self) -> str:
        return "all" if self.fallback else self.kind

    def weights(self) -> torch.Tensor:
        w = torch.zeros(self.n_tokens, dtype=torch.float32)
        w[list(self.positions)] = 1.0 / len(self.positions)
        return w

    def to_dict(self) -> dict:
        """JSON-ready description (for result.json)."""
        head = self.kind + (f"[{self.backend}]" if self.backend else "")
        if self.fallback:
            head += f" -> all ({self.fallback})"
        summary = head + ": " + " ".join(f"{t}@{p}" for t, p in zip(self.tokens, self.positions))
        d = {
            "spec": self.spec,
            "resolved": self.resolved,
            "fallback": self.fallback,
            "backend": self.backend,
            "positions": list(self.positions),
            "tokens": list(self.tokens),
            "words": list(self.words),
            "summary": summary,
        }
        d.update(self.extra)
        return d


def _phrase_view(text: TextBatch, b: int):
    if not 0 <= b < len(text.phrases):
        raise IndexError(f"phrase index {b} out of range for a batch of {len(text.phrases)}")
    phrase = text.phrases[b]
    tokens, word_ids, spans = text.tokens[b], text.word_ids[b], text.word_spans[b]
    special = [bool(x) for x in torch.as_tensor(text.special[b]).tolist()]
    n = len(tokens)
    if len(word_ids) != n or len(special) != n:
        raise ValueError(f"phrase {b}: tokens ({n}), word_ids ({len(word_ids)}) and special ({len(special)}) differ in length")
    for wid in word_ids:
        if wid is not None and not 0 <= wid < len(spans):
            raise ValueError(f"phrase {b}: word id {wid} has no entry in word_spans ({len(spans)} words)")
    # sub-token positions of each word (special tokens never belong to a word)
    word_pos: list[list[int]] = [[] for _ in spans]
    for i, wid in enumerate(word_ids):
        if wid is not None and not special[i]:
            word_pos[wid].append(i)
    return phrase, tokens, word_ids, spans, special, word_pos


def _parse_spec(spec: str) -> tuple[str, list[str]]:
    s = spec.strip()
    low = s.lower()
    for prefix in ("words:", "words="):
        if low.startswith(prefix):
            body = s[len(prefix):].strip()
            if body.startswith("[") and body.endswith("]"):
                body = body[1:-1]
            entries = [e.strip().strip("'\"").strip() for e in body.split(",")]
            entries = [e for e in entries if e]
            if not entries:
                raise ValueError(f"token filter {spec!r}: no words given (expected 'words:w1,w2')")
            return "words", entries
    if low in ("all", "lexical", "disease", "start"):
        return low, []
    raise ValueError(f"unknown token filter {spec!r}; expected one of {', '.join(SPECS)}")


def _match_entry(entry: str, phrase: str, spans: Sequence[tuple[int, int]]) -> list[int]:
    """Indices of the words covered by every word-aligned, case-insensitive occurrence of ``entry``."""
    starts = {s: k for k, (s, _) in enumerate(spans)}
    ends = {e: k for k, (_, e) in enumerate(spans)}
    hits: list[int] = []
    pat = re.compile(re.escape(entry), re.IGNORECASE)
    pos = 0
    while True:
        m = pat.search(phrase, pos)
        if m is None:
            break
        if m.start() in starts and m.end() in ends:
            hits.extend(range(starts[m.start()], ends[m.end()] + 1))
        pos = m.start() + 1
    return hits


def select_tokens(text: TextBatch, b: int, spec: str, category: str | None = None) -> TokenSelection:
    """Apply token filter ``spec`` to phrase ``b`` of ``text`` (see the module docstring)."""
    kind, entries = _parse_spec(spec)
    phrase, tokens, word_ids, spans, special, word_pos = _phrase_view(text, b)
    n = len(tokens)
    words = [phrase[s:e] for s, e in spans]

    def make(positions, word_idx, fallback=None, backend=None, **extra):
        positions = tuple(sorted(set(positions)))
        return TokenSelection(
            spec=spec, kind=kind, n_tokens=n, positions=positions, tokens=tuple(tokens[p] for p in positions),
            words=tuple(words[k] for k in sorted(set(word_idx))), fallback=fallback, backend=backend, extra=extra,
        )

    all_pos = [i for i in range(n) if not special[i] and word_ids[i] is not None]
    all_words = [k for k in range(len(spans)) if word_pos[k]]

    if kind == "start":
        if not 0 <= text.start_index < n:
            raise ValueError(f"start_index {text.start_index} outside the sequence of {n} tokens")
        return make([text.start_index], [])

    if not all_pos:
        raise ValueError(f"phrase {b} ({phrase!r}) has no word token to select")

    if kind == "all":
        return make(all_pos, all_words)

    if kind == "lexical":
        backend = lexical_backend()
        keep = content_words(phrase, spans, backend)
        kept = [k for k in range(len(spans)) if keep[k] and word_pos[k]]
        if not kept:
            return make(all_pos, all_words, fallback="no content word", backend=backend)
        return make([word_pos[k][0] for k in kept], kept, backend=backend)

    if kind == "disease":
        if category is None:  # no category given: the keywords of every category the phrase names
            inferred = [c for c in DISEASE_KEYWORDS if any(kw in w.lower() for kw in DISEASE_KEYWORDS[c] for w in words)]
            hit = [k for k in all_words if any(kw in words[k].lower() for c in inferred for kw in DISEASE_KEYWORDS[c])]
            if not hit:
                return make(all_pos, all_words, fallback="no category, and no category's keyword in the phrase")
            return make([p for k in hit for p in word_pos[k]], hit, inferred_categories=inferred)
        keywords = disease_keywords(category)
        if not keywords:
            return make(all_pos, all_words, fallback=f"no keywords for category {category!r}", category=category)
        hit = [k for k in all_words if any(kw in words[k].lower() for kw in keywords)]
        if not hit:
            return make(all_pos, all_words, fallback=f"no {category} keyword in phrase", category=category)
        return make([p for k in hit for p in word_pos[k]], hit, category=category, keywords=list(keywords))

    # kind == "words"
    chosen: list[int] = []
    missing, truncated = [], []
    for entry in entries:
        idx = _match_entry(entry, phrase, spans)
        if not idx:
            missing.append(entry)
        elif not any(word_pos[k] for k in idx):
            truncated.append(entry)
        chosen.extend(k for k in idx if word_pos[k])
    if missing or truncated:
        msg = []
        if missing:
            msg.append(f"word(s) {', '.join(repr(m) for m in missing)} not in phrase {phrase!r}")
        if truncated:
            msg.append(f"word(s) {', '.join(repr(m) for m in truncated)} truncated away by the tokenizer")
        raise ValueError(f"token filter {spec!r}: " + "; ".join(msg) + f" (words: {[w for w in words]})")
    return make([p for k in chosen for p in word_pos[k]], chosen)


def token_weights(text: TextBatch, b: int, spec: str, category: str | None = None) -> torch.Tensor:
    """(N,) float32 uniform weights over the selected positions of phrase ``b`` (non-negative, sum 1)."""
    return select_tokens(text, b, spec, category).weights()


def selected_positions(text: TextBatch, b: int, spec: str, category: str | None = None) -> list[int]:
    """Selected token positions of phrase ``b``, ascending."""
    return list(select_tokens(text, b, spec, category).positions)


def explain(text: TextBatch, b: int, spec: str, category: str | None = None) -> dict:
    """JSON-ready account of a selection: positions, token strings, words, fallback, backend, and a
    one-line ``summary`` such as ``"lexical[spacy]: small@1 left@2 apical@3 pneumo@4"``."""
    return select_tokens(text, b, spec, category).to_dict()
