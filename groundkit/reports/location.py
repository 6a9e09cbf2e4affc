"""Laterality and location grammar: which side and which zone a finding is in, and where that was written.

A grounding phrase without its side asks the model to look at both lungs, so the side is read from the
finding's own noun phrase ("small left apical pneumothorax", "consolidation in the right lung base",
"effusion, left", "atelectasis right base", "RLL opacity", "lingular atelectasis"), from comparatives
("right greater than left", "R > L", "larger on the left": both sides) and, failing that, from a location
phrase elsewhere in the same sentence ("Opacity is seen in the right base", "At the left base, there is
atelectasis"). Every rule looks a bounded number of tokens away.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from groundkit.reports.lexicon import Lexicon
from groundkit.reports.model import Span

__all__ = ["Tok", "Place", "TOKEN", "describe", "place_run", "extend_right", "detached_places", "attach_places",
           "comparatives"]

TOKEN = re.compile(r"[A-Za-z0-9]+(?:[-/'][A-Za-z0-9]+)*")
ORDINAL = re.compile(r"\d+(?:st|nd|rd|th)$")
_HARD_STOPS = frozenset({"but", "however", "although", "whereas", "while", "though"})
_FOCUS = frozenset({"particularly", "especially", "predominantly", "mainly", "mostly", "greatest", "worst",
                    "most", "primarily", "largely", "predominately"})
MAX_DETACHED_GAP = 8  # tokens between a finding and a location phrase elsewhere in its sentence
MAX_CHAIN_GAP = 3  # tokens between coordinated findings that share one location phrase


@dataclass(frozen=True)
class Tok:
    start: int
    end: int
    word: str  # lower case


@dataclass
class Place:
    """A location phrase: side, normalised zones and their spans; ``lo``/``hi`` are token indices."""

    start: int
    end: int
    lo: int
    hi: int
    side: str | None
    location: list[str]
    side_span: Span | None
    location_spans: list[Span]
    has_prep: bool = False


@dataclass
class Description:
    side: str | None = None
    location: list[str] = field(default_factory=list)
    side_span: Span | None = None
    location_spans: list[Span] = field(default_factory=list)


def parts(word: str) -> list[str]:
    return [p for p in re.split(r"[-/]", word) if p]


@lru_cache(maxsize=1 << 16)
def _pieces(lex: Lexicon, word: str) -> tuple[str, ...]:
    if word in lex.sides or word in lex.zones or word in lex.places["anatomy"] or word in lex.places["levels"]:
        return (word,)
    return tuple(p for p in word.split("-") if p) if "/" not in word else (word,)


@lru_cache(maxsize=1 << 16)
def is_place(lex: Lexicon, word: str) -> bool:
    """Side, zone, level or anatomy word (also hyphenated: "left-sided", "mid-lung")."""
    ps = _pieces(lex, word)
    return bool(ps) and all(p in lex.sides or p in lex.zones or p in lex.places["anatomy"]
                            or p in lex.places["levels"] for p in ps)


PhraseValues = dict[Span, tuple[str | None, str | None]]  # span of a place phrase -> (side, location)


def phrase_value(values: PhraseValues | None, span: Span) -> tuple[str | None, str | None]:
    """Side and location of a comparative ("right greater than left": bilateral) or a place phrase
    ("behind the heart": left, retrocardiac)."""
    return (values or {}).get(span, ("bilateral", None))


def describe(lex: Lexicon, items: list[Tok], bilateral_spans: list[Span] = (),
             values: PhraseValues | None = None) -> Description:
    """Side and normalised location of some words: "left upper lobe" -> left, ["upper lobe"];
    "mid and lower lungs" -> ["middle zone", "lower zone"]; "RLL" -> right, ["lower lobe"].
    ``bilateral_spans``: comparatives and place phrases inside the words (``values`` gives what each
    stands for; default bilateral)."""
    sides: list[tuple[str, Span]] = []
    locs: list[tuple[str, Span]] = []
    for sp in bilateral_spans:
        side, loc = phrase_value(values, sp)
        if side:
            sides.append((side, sp))
        if loc:
            locs.append((loc, sp))
    pending: list[tuple[str, Span]] = []

    def flush(noun: str, end: int | None) -> None:
        for lvl, (s, e) in pending:
            name = "middle" if lvl == "mid" else lvl
            locs.append((f"{name} {noun}", (s, end if end is not None else e)))
        pending.clear()

    for t in items:
        for p in _pieces(lex, t.word):
            if p == "both" and not any(is_place(lex, u.word) and u.word != "both" for u in items):
                continue
            if p in lex.sides:
                sides.append((lex.sides[p], (t.start, t.end)))
            if p in lex.places["levels"]:
                pending.append((p, (t.start, t.end)))
            elif p in lex.places["lobe_nouns"]:
                flush("lobe", t.end)
            elif p in lex.places["zone_nouns"]:
                flush("zone", t.end)
            elif p in lex.zones:
                flush("zone", None)
                locs.append((lex.zones[p], (t.start, t.end)))
    flush("zone", None)
    if not sides and any(name == "middle lobe" for name, _ in locs):  # only the right lung has one
        sides = [("right", span) for name, span in locs if name == "middle lobe"][:1]
    if not sides:  # "small pleural effusions", "the lower lobes": both sides when no side is written
        plural = lex.places["plural_bilateral"]
        sides = [("bilateral", (t.start, t.end)) for t in items if t.word in plural][:1]
    d = Description()
    if sides:
        vals = {v for v, _ in sides}
        d.side = "bilateral" if "bilateral" in vals or {"left", "right"} <= vals else next(iter(vals))
        d.side_span = (min(s for _, (s, _) in sides), max(e for _, (_, e) in sides))
    seen: dict[str, None] = {}
    for name, span in locs:
        if name not in seen:
            seen[name] = None
            d.location_spans.append(span)
    d.location = list(seen)
    return d


def comparatives(lex: Lexicon, text: str, span: Span) -> list[Span]:
    """Spans of "right greater than left", "R > L", "larger on the left" in a sentence (both sides)."""
    out: list[Span] = []
    for p in lex.places["comparatives"]:
        out.extend(m.span() for m in lex.compile(p).finditer(text, *span))
    return out


def _gap_ok(text: str, a: int, b: int, allow: str = "") -> bool:
    """Only whitespace/hyphens (and the characters in ``allow``) between a and b."""
    return a <= b and all(c.isspace() or c == "-" or c in allow for c in text[a:b])


def place_run(lex: Lexicon, text: str, toks: list[Tok], j: int, hi: int, blocked: set[int]) -> int:
    """Token index after the run of place words starting at ``j`` ("left lower lobe", "mid and lower
    lungs", "right upper and middle lobes"); ``j`` if there is none."""
    k, n = j, 0
    while k < len(toks) and toks[k].end <= hi and k not in blocked:
        t = toks[k]
        if k > j and not _gap_ok(text, toks[k - 1].end, t.start):
            break
        if is_place(lex, t.word) or ORDINAL.match(t.word):
            k, n = k + 1, n + 1
            continue
        if (t.word in lex.places["connectors"] and n and k + 1 < len(toks) and toks[k + 1].end <= hi
                and k + 1 not in blocked and is_place(lex, toks[k + 1].word)
                and _gap_ok(text, t.end, toks[k + 1].start)):
            k += 1
            continue
        break
    while k > j and toks[k - 1].word in lex.places["connectors"]:
        k -= 1
    return k


def _meaningful(lex: Lexicon, toks: list[Tok], lo: int, hi: int) -> bool:
    """A run that says where: a side or zone word, not only "lung"/"chest"."""
    return any(p in lex.sides or p in lex.zones or p in lex.places["levels"] or p in lex.places["plural_bilateral"]
               for t in toks[lo:hi] for p in _pieces(lex, t.word) if p != "both") or \
        any(t.word == "both" for t in toks[lo:hi]) and hi - lo > 1


@lru_cache(maxsize=8)
def _preps_by_first(lex: Lexicon) -> dict[str, list[list[str]]]:
    out: dict[str, list[list[str]]] = {}
    for prep in sorted(lex.places["prepositions"], key=lambda p: -len(p.split())):
        words = prep.split()
        out.setdefault(words[0], []).append(words)
    return out


def _prep_at(lex: Lexicon, text: str, toks: list[Tok], j: int, hi: int, blocked: set[int]) -> int:
    """Token index after a location preposition and its determiners at ``j`` (``j`` if none)."""
    if j >= len(toks):
        return j
    for words in _preps_by_first(lex).get(toks[j].word, ()):
        seq = toks[j:j + len(words)]
        if len(seq) < len(words) or [s.word for s in seq] != words or seq[-1].end > hi:
            continue
        if any(j + i in blocked for i in range(len(words))):
            continue
        if not all(_gap_ok(text, a.end, b.start) for a, b in zip(seq, seq[1:])):
            continue
        k = j + len(words)
        while (k < len(toks) and toks[k].word in lex.places["determiners"] and toks[k].word != "both"
               and toks[k].end <= hi and k not in blocked and _gap_ok(text, toks[k - 1].end, toks[k].start)):
            k += 1
        return k
    return j


def extend_right(lex: Lexicon, text: str, toks: list[Tok], j: int, end: int, hi: int, blocked: set[int],
                 comps: list[Span]) -> int:
    """End of the finding's trailing location phrase, starting at token ``j`` right after char ``end``:
    "of the right lung base", "on the left", "bilaterally", "right base", ", left", ", R > L"."""
    cur = end
    for _ in range(6):  # bounded: at most a few chained phrases ("in the upper zone of the left lung")
        if j >= len(toks) or toks[j].end > hi or j in blocked:
            break
        comp = next((c for c in comps if c[0] >= cur and _gap_ok(text, cur, c[0], ",(") and c[1] <= hi), None)
        if comp is not None:
            cur = comp[1]
            while j < len(toks) and toks[j].start < cur:
                j += 1
            continue
        t = toks[j]
        if _gap_ok(text, cur, t.start) and t.word == "bilaterally":
            cur, j = t.end, j + 1
            continue
        k = _prep_at(lex, text, toks, j, hi, blocked) if _gap_ok(text, cur, t.start) else j
        if k == j and t.word in _FOCUS and j + 1 < len(toks) and _gap_ok(text, cur, t.start, ","):
            # ", particularly on the left", ", greatest at the right base"
            k2 = _prep_at(lex, text, toks, j + 1, hi, blocked)
            if k2 > j + 1:
                k = k2
        if k > j:
            k2 = place_run(lex, text, toks, k, hi, blocked)
            if k2 > k and _meaningful(lex, toks, k, k2):
                cur, j = toks[k2 - 1].end, k2
                continue
            break
        # a bare place run: "<finding> right base", "<finding>, left"; after a structured field name, its
        # value: "EFFUSION: small left" (a few size words may come first)
        if cur == end and ":" in text[cur:t.start] and _gap_ok(text, cur, t.start, ":"):
            j0 = j
            while j < len(toks) and j - j0 < 3 and toks[j].word in lex.words["size_modifiers"] and j not in blocked:
                j += 1
            if j >= len(toks) or toks[j].end > hi or j in blocked:
                break
        elif not _gap_ok(text, cur, t.start, ","):
            break
        k2 = place_run(lex, text, toks, j, hi, blocked)
        if k2 == j or not _meaningful(lex, toks, j, k2):
            break
        has_noun = any(p in lex.zones or p in lex.places["anatomy"] for u in toks[j:k2] for p in _pieces(lex, u.word))
        after = text[toks[k2 - 1].end:toks[k2 - 1].end + 2].lstrip(" ")
        at_clause_end = k2 >= len(toks) or toks[k2].start >= hi or after[:1] in (",", ".", ";", ":", ")", "")
        if not (has_noun or at_clause_end):
            break
        cur, j = toks[k2 - 1].end, k2
    return cur


def detached_places(lex: Lexicon, text: str, toks: list[Tok], taken: set[int], comps: list[Span],
                    values: PhraseValues | None = None) -> list[Place]:
    """Location phrases of a sentence outside every finding's own phrase (``taken`` token indices)."""
    out: list[Place] = []
    j = 0
    while j < len(toks):
        if j in taken:
            j += 1
            continue
        k = _prep_at(lex, text, toks, j, toks[-1].end, taken)
        k2 = place_run(lex, text, toks, k, toks[-1].end, taken)
        if k2 > k and _meaningful(lex, toks, k, k2):
            has_side_or_zone = any(p in lex.zones or p in lex.places["anatomy"] or p in lex.places["levels"]
                                   for u in toks[k:k2] for p in _pieces(lex, u.word))
            if k > j or has_side_or_zone:
                start, end = toks[j].start, toks[k2 - 1].end
                comp = [c for c in comps if c[0] >= end and _gap_ok(text, end, c[0], ",(")]
                bil = [c for c in comps if start <= c[0] < toks[k2 - 1].end + 40 and c in comp[:1]]
                if bil:
                    end = bil[0][1]
                d = describe(lex, toks[k:k2], bil, values)
                out.append(Place(start, end, j, k2, d.side, d.location, d.side_span, d.location_spans, k > j))
                j = k2
                continue
        j += 1
    for c in comps:  # a comparative on its own ("effusions, larger on the left")
        if not any(p.start <= c[0] < p.end for p in out):
            lo = next((i for i, t in enumerate(toks) if t.start >= c[0]), len(toks))
            hi = next((i for i, t in enumerate(toks) if t.start >= c[1]), len(toks))
            if lo < hi and not any(i in taken for i in range(lo, hi)):
                side, loc = phrase_value(values, c)
                out.append(Place(c[0], c[1], lo, hi, side, [loc] if loc else [], c if side else None,
                                 [c] if loc else [], True))
    return sorted(out, key=lambda p: p.start)


def _hard_stop_between(text: str, toks: list[Tok], a: int, b: int) -> bool:
    """A clause boundary between token indices a (exclusive end) and b (start)."""
    lo = toks[a - 1].end if a > 0 else toks[0].start
    if ";" in text[lo:toks[b].start] if b < len(toks) else False:
        return True
    return any(t.word in _HARD_STOPS for t in toks[a:b])


def attach_places(lex: Lexicon, text: str, toks: list[Tok], mentions: list[tuple[int, int]],
                  can_take: list[bool], places: list[Place]) -> list[Place | None]:
    """For each mention (token range [lo, hi)), the detached location phrase that applies to it, if any:
    the nearest phrase after the mention (or, with none before, the one leading the sentence), shared by
    findings coordinated right before it ("effusion and atelectasis at the left base")."""
    out: list[Place | None] = [None] * len(mentions)
    for p in places:
        before = [i for i, (lo, hi) in enumerate(mentions) if hi <= p.lo]
        if before:
            i = before[-1]
            if p.lo - mentions[i][1] > MAX_DETACHED_GAP or _hard_stop_between(text, toks, mentions[i][1], p.lo):
                continue
            chain, step = [i], -1
        else:
            after = [i for i, (lo, hi) in enumerate(mentions) if lo >= p.hi]
            if not after:
                continue
            i = after[0]
            if mentions[i][0] - p.hi > MAX_DETACHED_GAP or _hard_stop_between(text, toks, p.hi, mentions[i][0]):
                continue
            chain, step = [i], 1
        while 0 <= chain[-1] + step < len(mentions):
            a, b = chain[-1], chain[-1] + step
            gap = mentions[a][0] - mentions[b][1] if step < 0 else mentions[b][0] - mentions[a][1]
            lo_i, hi_i = (mentions[b][1], mentions[a][0]) if step < 0 else (mentions[a][1], mentions[b][0])
            if gap > MAX_CHAIN_GAP or _hard_stop_between(text, toks, lo_i, hi_i):
                break
            chain.append(b)
        for i in chain:
            if can_take[i] and out[i] is None:
                out[i] = p
    return out
