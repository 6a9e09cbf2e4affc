"""The built-in token filters (declared in :data:`groundkit.choices.TOKEN_FILTERS`; what each selects:
:mod:`groundkit.engine.tokens`). A filter takes a :class:`PhraseView` of one phrase and the arguments written
after its name (``words:left,apical`` -> ``["left", "apical"]``) and returns a :class:`Picked`: the token
positions, the words they belong to and, where it fell back to every word, why. A new filter is one file
like this one plus a line in the table (or ``register_token_filter`` / the ``groundkit.token_filters``
entry point)."""
from __future__ import annotations

import re
from typing import Any, Sequence

from groundkit.engine.lexical import content_words, lexical_backend
from groundkit.engine.tokens import DISEASE_KEYWORDS, PhraseView, Picked, disease_keywords

__all__ = ["disease", "every_word", "lexical", "start", "words"]

def _no_args(view: PhraseView, args: list[str]) -> None:
    if args:
        raise ValueError(f"token filter {view.spec!r}: takes no words (got {', '.join(args)})")


def _need_words(view: PhraseView) -> None:
    if not view.all_pos:
        raise ValueError(f"phrase {view.phrase!r} has no word token to select")


def _every(view: PhraseView, why: str, **extra: Any) -> Picked:
    return Picked(view.all_pos, view.all_words, fallback=why, extra=extra)


def start(view: PhraseView, args: list[str]) -> Picked:
    """The start token only (BBM's image bias, Nuetzel eq. 2)."""
    _no_args(view, args)
    if not 0 <= view.start_index < view.n_tokens:
        raise ValueError(f"start_index {view.start_index} outside the sequence of {view.n_tokens} tokens")
    return Picked([view.start_index], [])


def every_word(view: PhraseView, args: list[str]) -> Picked:
    """``all``: every sub-token of every word (Vilouras)."""
    _no_args(view, args)
    _need_words(view)
    return Picked(view.all_pos, view.all_words)


def lexical(view: PhraseView, args: list[str]) -> Picked:
    """``lexical``: the first sub-token of each adjective, noun and verb (Nuetzel)."""
    _no_args(view, args)
    _need_words(view)
    backend = lexical_backend()
    keep = content_words(view.phrase, view.spans, backend)
    kept = [k for k in range(len(view.spans)) if keep[k] and view.word_pos[k]]
    if not kept:
        return Picked(view.all_pos, view.all_words, fallback="no content word", backend=backend)
    return Picked([view.word_pos[k][0] for k in kept], kept, backend=backend)


def disease(view: PhraseView, args: list[str]) -> Picked:
    """``disease``: the words holding a keyword of the sample's category (of every category the phrase names
    when it has none)."""
    _no_args(view, args)
    _need_words(view)
    low = [w.lower() for w in view.words]
    category = view.category
    if category is None:
        inferred = [c for c in DISEASE_KEYWORDS if any(kw in w for kw in DISEASE_KEYWORDS[c] for w in low)]
        hit = [k for k in view.all_words if any(kw in low[k] for c in inferred for kw in DISEASE_KEYWORDS[c])]
        if not hit:
            return _every(view, "no category, and no category's keyword in the phrase")
        return Picked([p for k in hit for p in view.word_pos[k]], hit, extra={"inferred_categories": inferred})
    keywords = disease_keywords(category)
    if not keywords:
        return _every(view, f"no keywords for category {category!r}", category=category)
    hit = [k for k in view.all_words if any(kw in low[k] for kw in keywords)]
    if not hit:
        return _every(view, f"no {category} keyword in phrase", category=category)
    return Picked([p for k in hit for p in view.word_pos[k]], hit, extra={"category": category, "keywords": list(keywords)})


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


def words(view: PhraseView, args: list[str]) -> Picked:
    """``words:w1,w2``: the named words, all their sub-tokens, every occurrence; a missing one is an error."""
    if not args:
        raise ValueError(f"token filter {view.spec!r}: no words given (expected 'words:w1,w2')")
    _need_words(view)
    chosen: list[int] = []
    missing, truncated = [], []
    for entry in args:
        idx = _match_entry(entry, view.phrase, view.spans)
        if not idx:
            missing.append(entry)
        elif not any(view.word_pos[k] for k in idx):
            truncated.append(entry)
        chosen.extend(k for k in idx if view.word_pos[k])
    if missing or truncated:
        msg = []
        if missing:
            msg.append(f"word(s) {', '.join(repr(m) for m in missing)} not in phrase {view.phrase!r}")
        if truncated:
            msg.append(f"word(s) {', '.join(repr(m) for m in truncated)} truncated away by the tokenizer")
        raise ValueError(f"token filter {view.spec!r}: " + "; ".join(msg) + f" (words: {list(view.words)})")
    return Picked([p for k in chosen for p in view.word_pos[k]], chosen)
