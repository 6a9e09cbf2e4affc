"""Sentence -> mentions: observation cores from the lexicon, noun-phrase extension (modifiers on the left,
"of/in/at the <side> <zone>" on the right), laterality/zones/modifiers and the cue that applies."""
from __future__ import annotations

import re
from dataclasses import dataclass

from groundkit.reports import lexicon as L
from groundkit.reports.model import Mention, Span, longest_first, only_whitespace, overlaps, unique
from groundkit.reports.negation import assign_cues, find_cues

__all__ = ["TOKEN", "sentence_mentions"]

TOKEN = re.compile(r"[A-Za-z0-9]+(?:[-/'][A-Za-z0-9]+)*")
_ORDINAL = re.compile(r"\d+(?:st|nd|rd|th)$")
_INTERNAL_NEG = re.compile(r"\bnot\b", re.IGNORECASE)
_INTERNAL_UNC = re.compile(r"\b(?:likely|probably|possibly)\b", re.IGNORECASE)


@dataclass(frozen=True)
class _Tok:
    start: int
    end: int
    word: str  # lower case


def _parts(word: str) -> list[str]:
    return [p for p in re.split(r"[-/]", word) if p]


def _is_modifier(word: str) -> bool:
    return word in L.MODIFIERS or (("-" in word) and _parts(word)[0] in L.MODIFIERS)


def _is_place(word: str) -> bool:
    """Laterality, zone or anatomy word (also hyphenated: "left-sided", "mid-lung")."""
    if word in L.LATERALITY or word in L.ZONES or word in L.ANATOMY:
        return True
    parts = _parts(word)
    return len(parts) > 1 and all(p in L.LATERALITY or p in L.ZONES or p in L.ANATOMY for p in parts)


def _left_word(word: str) -> bool:
    """Words that may stand before an observation inside its noun phrase."""
    return _is_modifier(word) or _is_place(word) or bool(_ORDINAL.match(word))


def _find_cores(text: str, span: Span) -> list[tuple[int, int, str]]:
    """Lexicon matches (start, end, observation) inside a sentence."""
    cands = []
    for obs, patterns in L.OBSERVATIONS.items():
        for pattern in patterns:  # one regex per synonym: an alternation would stop at its first match
            for m in L.compile_pattern(pattern).finditer(text, *span):
                if m.end() > m.start():
                    cands.append((m.start(), m.end(), obs))
    return longest_first(cands)


def _extend_left(text: str, toks: list[_Tok], start: int, lo: int, blocked: set[int]) -> int:
    """Take modifier/laterality/zone words directly before the match ("small left apical")."""
    k = max((i for i, t in enumerate(toks) if t.end <= start), default=-1)
    cur = start
    while k >= 0:
        t = toks[k]
        if t.start < lo or k in blocked or not only_whitespace(text, t.end, cur):
            break
        if _left_word(t.word):
            cur, k = t.start, k - 1
            continue
        if t.word in L.CONNECTORS and k >= 1 and k - 1 not in blocked and toks[k - 1].start >= lo:
            before, after = toks[k - 1].word, toks[k + 1].word if k + 1 < len(toks) else ""
            pair_ok = ((_is_modifier(before) and _is_modifier(after))
                       or (before in L.LATERALITY and after in L.LATERALITY))
            if pair_ok and only_whitespace(text, toks[k - 1].end, t.start) and k + 1 < len(toks) and toks[k + 1].start == cur:
                cur, k = toks[k - 1].start, k - 2
                continue
        break
    return cur


def _place_run(text: str, toks: list[_Tok], j: int, cur: int, hi: int, blocked: set[int]) -> tuple[int, int]:
    """Consume place words from token j on ("the left lower lobe"); returns (new end, next j)."""
    end, n = cur, 0
    while j < len(toks):
        t = toks[j]
        if t.end > hi or j in blocked or not only_whitespace(text, end, t.start):
            break
        if _is_place(t.word) or bool(_ORDINAL.match(t.word)):
            end, j, n = t.end, j + 1, n + 1
            continue
        if (t.word in L.CONNECTORS and n and j + 1 < len(toks) and toks[j + 1].end <= hi and j + 1 not in blocked
                and only_whitespace(text, t.end, toks[j + 1].start)):
            before, after = toks[j - 1].word, toks[j + 1].word
            same_kind = ((before in L.ZONES and after in L.ZONES)
                         or (before in L.LATERALITY and after in L.LATERALITY))
            if same_kind:
                end, j = toks[j + 1].end, j + 2
                n += 1
                continue
        break
    return (end, j) if n else (cur, j)


def _extend_right(text: str, toks: list[_Tok], end: int, hi: int, blocked: set[int]) -> int:
    """Take a trailing location phrase ("of the right lung base", "on the left", "bilaterally")."""
    j = next((i for i, t in enumerate(toks) if t.start >= end), len(toks))
    cur = end
    while j < len(toks):
        t = toks[j]
        if t.end > hi or j in blocked or not only_whitespace(text, cur, t.start):
            break
        if t.word == "bilaterally":
            cur, j = t.end, j + 1
            continue
        moved = False
        for prep in L.LOCATION_PREPOSITIONS:
            words = prep.split()
            seq = toks[j:j + len(words)]
            if len(seq) < len(words) or [s.word for s in seq] != words:
                continue
            if any(j + i in blocked for i in range(len(words))):
                continue
            if not all(only_whitespace(text, a.end, b.start) for a, b in zip(seq, seq[1:])):
                continue
            k, p_end = j + len(words), seq[-1].end
            # "both" is a side, not only a determiner: leave it to the place run
            while (k < len(toks) and toks[k].word in L.DETERMINERS and toks[k].word != "both"
                   and only_whitespace(text, p_end, toks[k].start)):
                p_end, k = toks[k].end, k + 1
            new_end, k2 = _place_run(text, toks, k, p_end, hi, blocked)
            if new_end > p_end:
                cur, j, moved = new_end, k2, True
            break
        if not moved:
            break
    return cur


def _laterality(words: list[str]) -> str | None:
    sides = {L.LATERALITY[p] for w in words for p in [w, *_parts(w)] if p in L.LATERALITY}
    if "bilateral" in sides or {"left", "right"} <= sides:
        return "bilateral"
    return next(iter(sides), None)


def _describe(words: list[str], core_words: set[str]) -> tuple[str | None, list[str], list[str]]:
    """(laterality, zones, modifiers) of a mention's words; words of the lexicon match itself are not
    modifiers ("central line", "interstitial edema") unless they are degree adverbs ("is mildly enlarged")."""
    zones = unique(p for w in words for p in [w, *_parts(w)] if p in L.ZONES)
    mods = unique(w for w in words if _is_modifier(w) and w not in L.LATERALITY and w not in L.ZONES
                   and (w not in core_words or w.endswith("ly")))
    return _laterality(words), zones, mods


def sentence_mentions(text: str, sent: Span, section: str) -> list[Mention]:
    cores = _find_cores(text, sent)
    if not cores:
        return []
    cues = find_cues(text, sent, cores)
    toks = [_Tok(m.start(), m.end(), m.group(0).lower()) for m in TOKEN.finditer(text, *sent)]
    blocked = {i for i, t in enumerate(toks)
               if any(overlaps((t.start, t.end), (c.start, c.end)) for c in cues)
               or any(overlaps((t.start, t.end), (c[0], c[1])) for c in cores)}
    # left modifiers bind tighter than a previous finding's trailing location phrase: extend left first
    lefts = [_extend_left(text, toks, s, cores[i - 1][1] if i else sent[0], blocked)
             for i, (s, _, _) in enumerate(cores)]
    spans = []
    for i, (s, e, _) in enumerate(cores):
        hi = lefts[i + 1] if i + 1 < len(cores) else sent[1]
        spans.append((lefts[i], _extend_right(text, toks, e, hi, blocked)))
    assigned = assign_cues(text, spans, cues)
    sentence = text[sent[0]:sent[1]]
    out = []
    for (s, e), (cs, ce, obs), (cue, _) in zip(spans, cores, assigned):
        words = [t.word for t in toks if t.start >= s and t.end <= e]
        core_words = {t.word for t in toks if t.start >= cs and t.end <= ce}
        lat, zones, mods = _describe(words, core_words)
        core_text = text[cs:ce]
        neg_cue = unc_cue = None
        if obs != "No Finding" and _INTERNAL_NEG.search(core_text):
            neg_cue = _INTERNAL_NEG.search(core_text).group(0)
        elif obs != "No Finding" and _INTERNAL_UNC.search(core_text):
            unc_cue = _INTERNAL_UNC.search(core_text).group(0)
        elif cue is not None:
            neg_cue, unc_cue = (cue.text, None) if cue.kind == "negation" else (None, cue.text)
        out.append(Mention(
            text=text[s:e], start=s, end=e, category=L.CATEGORY_OF[obs], observation=obs, laterality=lat,
            zones=zones, modifiers=mods, negated=neg_cue is not None, uncertain=unc_cue is not None,
            negation_cue=neg_cue, uncertainty_cue=unc_cue, sentence=sentence, sentence_span=sent,
            section=section, core=(cs, ce),
        ))
    return out
