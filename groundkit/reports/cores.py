"""Which findings a sentence names: the one pattern index a sentence is matched against, and the finding
cores kept from its matches. A module of its own because finding the cores is the first stage of
`mentions.sentence_mentions` and needs nothing the later stages (spans, places, cues) compute."""
from __future__ import annotations

from bisect import bisect_left
from functools import lru_cache

from groundkit.reports.lexicon import Lexicon
from groundkit.reports.matcher import PatternIndex, longest_first
from groundkit.reports.model import Span
from groundkit.reports.negation import CUE_GROUPS

__all__ = ["core_index", "find_cores", "MAX_COORD_WORDS"]


@lru_cache(maxsize=8)
def core_index(lex: Lexicon) -> PatternIndex:
    """Every pattern a sentence is matched against, in one index so that the words are walked once:
    observation synonyms (and the word senses that are no finding), cues, temporal words, comparatives."""
    idx: PatternIndex = PatternIndex()
    for op in lex.observations:
        idx.add(lex.compile(op.pattern), lex.first_words(op.pattern), ("core", op))
    for name, payload in CUE_GROUPS.items():
        for p in lex.cues[name]:
            idx.add(lex.compile(p), lex.first_words(p), ("cue", payload))
    for kind, pats in lex.temporal.items():
        for p in pats:
            idx.add(lex.compile(p), lex.first_words(p), ("temporal", kind))
    for p in lex.places["comparatives"]:
        idx.add(lex.compile(p), lex.first_words(p), ("comparative", None))
    for p, side, loc in lex.places["phrases"]:
        idx.add(lex.compile(p), lex.first_words(p), ("comparative", (side, loc)))
    return idx


_COORD_GAPS = frozenset({"and", "or", "and/or", ",", "nor"})
MAX_COORD_WORDS = 3  # words between the first adjective and the noun phrase it shares a head with


def _shared_heads(lex: Lexicon, text: str, words: list[tuple[int, str]], chosen: list, sent: Span) -> list:
    """Adjectives coordinated before one head ("no pleural or pericardial effusion"): when a word sense
    that is no finding ("pericardial effusion") follows "<adjective> and/or", the adjective with the same
    head is read as well ("pleural effusion"); if that is a finding, it takes the span from the adjective
    to the head. Bounded: a few words back, one small match per word sense."""
    starts = [w[0] for w in words]
    c_starts = [s for s, _, _ in chosen]  # in text order, not overlapping
    out = []
    for s, e, op in chosen:
        k = bisect_left(starts, s)
        if op.observation is not None or k >= len(words) or starts[k] != s or k + 1 >= len(words) \
                or starts[k + 1] >= e:
            out.append((s, e, op))
            continue
        head = text[starts[k + 1]:e]
        new = None
        for a in range(k - 1, max(-1, k - 1 - MAX_COORD_WORDS), -1):
            a_s = starts[a]
            a_e = a_s + len(words[a][1])
            if a_s < sent[0]:
                break
            gap = " ".join(text[a_e:s].lower().split())
            if gap.replace(" ,", ",") not in _COORD_GAPS:
                continue
            c = bisect_left(c_starts, a_e) - 1
            if c >= 0 and chosen[c][1] > a_s:
                break  # the adjective belongs to another match
            synth = f"{text[a_s:a_e]} {head}"
            for ms, me, pay in core_index(lex).matches(synth, 0, len(synth)):
                if pay[0] == "core" and ms == 0 and me == len(synth) and pay[1].observation is not None:
                    new = (a_s, e, pay[1])
                    break
            break
        out.append(new or (s, e, op))
    return out


def find_cores(lex: Lexicon, text: str, sent: Span, words: list[tuple[int, str]], every: list
               ) -> tuple[list, set[int], list] | None:
    """(every kept lexicon match, starts of cores read from coordinated adjectives, the finding cores), or
    None when the sentence names no finding. A core that needs a lung word ("opacity") is kept only when
    the sentence has one, so that "opacity of the spine" names none."""
    raw = [(s, e, p[1]) for s, e, p in every if p[0] == "core"]
    if not raw:
        return None
    chosen = longest_first(raw)
    shared: set[int] = set()  # starts of cores read from coordinated adjectives
    if any(op.observation is None for _, _, op in chosen):
        before = {s for s, _, _ in chosen}
        chosen = _shared_heads(lex, text, words, chosen, sent)
        shared = {s for s, _, _ in chosen} - before
    lung_named = None
    cores: list[tuple[int, int, object]] = []
    for s, e, op in chosen:
        if op.observation is None:
            continue
        if op.needs_lung:
            if lung_named is None:
                lw = lex.places["lung_words"]
                lung_named = any(w in lw for _, w in words)
            if not lung_named:
                continue
        cores.append((s, e, op))
    if not cores:
        return None
    return chosen, shared, cores
