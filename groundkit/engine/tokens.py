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

Each filter is an entry of the token-filter registry (:data:`groundkit.choices.TOKEN_FILTERS`; the built-ins
are in :mod:`groundkit.engine.token_filters`): the name before the first ``:`` picks it, the words after it are
its arguments, and a filter registered by a third party is used the same way (docs/registries.md).

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
from typing import Any, Sequence

import torch

from groundkit.choices import get_token_filter, split_token_spec
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
    "Picked",
    "PhraseView",
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

SPECS = ("all", "lexical", "disease", "words:<w1>,<w2>,...", "start")  # the built-ins (groundkit.list_token_filters(): every one)

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
class PhraseView:
    """What a filter sees of one phrase: its tokenizer words, which token positions belong to each word
    (empty: truncated away) and the sample's category (None for a phrase typed by hand)."""

    spec: str  # the recipe's tokens field, for error messages
    phrase: str
    words: list[str]
    spans: list[tuple[int, int]]
    word_pos: list[list[int]]
    all_pos: list[int]  # every word token (no start/end/pad token)
    all_words: list[int]  # every word that kept at least one token
    start_index: int
    n_tokens: int
    category: str | None = None


@dataclass
class Picked:
    """A filter's answer: token positions and the indices of the words they belong to."""

    positions: Sequence[int]
    word_idx: Sequence[int]
    fallback: str | None = None  # why it fell back to every word, None if it did not
    backend: str | None = None  # the lexical backend, for filters that use one
    extra: dict[str, Any] = field(default_factory=dict)



@dataclass(frozen=True)
class TokenSelection:
    """The outcome of one token filter on one phrase."""

    spec: str  # as requested
    kind: str  # the filter's registered name: "all" | "lexical" | "disease" | "words" | "start" | a registered one
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


def select_tokens(text: TextBatch, b: int, spec: str, category: str | None = None) -> TokenSelection:
    """Apply token filter ``spec`` to phrase ``b`` of ``text`` (see the module docstring): the filter named
    before the first ``:`` comes from the registry (groundkit.choices.TOKEN_FILTERS), the rest are its words."""
    kind, args = split_token_spec(spec)
    filt = get_token_filter(kind)  # an unknown name: the error lists the registered filters
    phrase, tokens, word_ids, spans, special, word_pos = _phrase_view(text, b)
    n = len(tokens)
    words = [phrase[s:e] for s, e in spans]
    view = PhraseView(spec=spec, phrase=phrase, words=words, spans=list(spans), word_pos=word_pos,
                      all_pos=[i for i in range(n) if not special[i] and word_ids[i] is not None],
                      all_words=[k for k in range(len(spans)) if word_pos[k]], start_index=text.start_index,
                      n_tokens=n, category=category)
    got = filt(view, args)
    positions = tuple(sorted(set(got.positions)))
    return TokenSelection(spec=spec, kind=kind, n_tokens=n, positions=positions, tokens=tuple(tokens[p] for p in positions),
                          words=tuple(words[k] for k in sorted(set(got.word_idx))), fallback=got.fallback,
                          backend=got.backend, extra=dict(got.extra))


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
