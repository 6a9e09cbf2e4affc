"""Negation, uncertainty and temporal status of mentions (NegEx / ConText style), with bounded scopes.

A cue governs findings in its own clause only: terminators ("but", "however", "with", "which", ";", ...)
split a sentence into clauses, and a scope runs at most ``MAX_SCOPE`` tokens from the cue, extended only
along a list of findings ("no effusion, pneumothorax or consolidation"). The nearest cue wins; a negation
beats an uncertainty at equal distance. Alternatives ("atelectasis versus pneumonia", "effusion or
atelectasis") make both sides uncertain unless a negation covers them. Every loop here is bounded by the
scope, so a sentence costs O(n log n) whatever its content.
"""
from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass

from groundkit.reports.matcher import longest_first
from groundkit.reports.model import Cue, Span, overlaps

__all__ = ["CUE_GROUPS", "CueSet", "Scoped", "assign_cues", "find_cues", "temporal_of"]

MAX_SCOPE = 8  # tokens from a cue to the first finding it governs (and between listed findings)
MAX_TEMPORAL = 6  # tokens from a temporal word to its finding

# cue list -> (kind, direction, flag)
CUE_GROUPS: dict[str, tuple[str, str, str]] = {
    "negation_pre": ("negation", "pre", ""),
    "negation_post": ("negation", "either", ""),
    "negation_either": ("negation", "either", ""),
    "resolved_pre": ("negation", "pre", "resolved"),
    "resolved_post": ("negation", "post", "resolved"),
    "indication_pre": ("uncertainty", "pre", "indication"),
    "uncertainty_pre": ("uncertainty", "pre", ""),
    "uncertainty_post": ("uncertainty", "post", ""),
    "uncertainty_both": ("alternative", "both", ""),
    "pseudo": ("pseudo", "", "chronic"),
    "terminators": ("terminator", "", ""),
    "negation_terminators": ("terminator", "", "negation"),
}


@dataclass(frozen=True)
class CueSet:
    """Cues of one sentence with their flags (``resolved``, ``indication``, ``chronic``)."""

    cues: list[Cue]
    flags: dict[tuple[int, int], str]


@dataclass
class Scoped:
    """What applies to one mention."""

    cue: Cue | None = None
    flag: str = ""
    distance: int = 1 << 30


def find_cues(cands: list[tuple[int, int, tuple[str, str, str]]], text: str,
              cores: list[tuple[int, int]]) -> CueSet:
    """Cues of the sentence (``cands``: every cue pattern match, payload (kind, direction, flag)), longest
    first; a cue inside an observation match ("no acute ... process", "heart is not enlarged") belongs to
    that match and is dropped."""
    starts = [c[0] for c in cores]
    kept = []
    for s, e, payload in cands:
        k = bisect_left(starts, e)
        if k > 0 and cores[k - 1][1] > s:
            continue  # overlaps the core that starts before e
        kept.append((s, e, payload))
    chosen = [c for c in longest_first(kept) if not _mid_clause_however(text, c[0], c[1])]
    cues = [Cue(s, e, text[s:e], p[0], p[1]) for s, e, p in chosen]
    return CueSet(cues, {(s, e): p[2] for s, e, p in chosen if p[2]})


def _mid_clause_however(text: str, s: int, e: int) -> bool:
    """"Early infection however is not excluded": a "however" between words, with no punctuation around it,
    is an adverb inside the clause, not a clause boundary."""
    if text[s:e].lower() != "however":
        return False
    before = text[max(0, s - 3):s].rstrip()
    after = text[e:e + 3].lstrip()
    return bool(before) and before[-1].isalnum() and bool(after) and after[0].isalnum()


def _token_at(tok_starts: list[int], pos: int) -> int:
    """Index of the first token starting at or after ``pos``."""
    return bisect_left(tok_starts, pos)


def assign_cues(text: str, spans: list[Span], cueset: CueSet, tok_starts: list[int],
                size_words: list[bool]) -> list[Scoped]:
    """For each mention span, the cue whose scope covers it (nearest; negation wins ties).

    ``tok_starts``: start of every token of the sentence (sorted); ``size_words[i]``: mention i carries its
    own size word ("small", "large"): such an item after a comma starts a new statement rather than
    continuing a negated list ("no effusion, small left pneumothorax")."""
    rules = _ScopeRules(text, spans, cueset, tok_starts, size_words)
    if not rules.n:
        return rules.best
    for cue in rules.active:
        rules.apply(cue)
    # alternatives: the finding right before and the one right after, when nothing else governs them
    # ("atelectasis versus pneumonia", "scarring versus atelectasis", "effusion or thickening")
    for cue in cueset.cues:
        if cue.kind == "alternative":
            rules.alternative(cue)
    return rules.best


class _ScopeRules:
    """The scope rules of one sentence, over its mention spans; ``best`` collects the winning cue of each
    mention as cues are applied. A class so that the rules share the sentence's token layout."""

    def __init__(self, text: str, spans: list[Span], cueset: CueSet, tok_starts: list[int],
                 size_words: list[bool]) -> None:
        cues = cueset.cues
        self.text, self.cueset, self.tok_starts, self.size_words = text, cueset, tok_starts, size_words
        terms = [c for c in cues if c.kind == "terminator" and not cueset.flags.get((c.start, c.end))]
        self.term_ends = [t.end for t in terms]
        self.neg_term_ends = sorted(t.end for t in cues if t.kind == "terminator")
        self.n = len(spans)
        self.best = [Scoped() for _ in range(self.n)]
        self.m_starts = [s for s, _ in spans]
        self.m_ends = [e for _, e in spans]
        self.tok_s = [_token_at(tok_starts, s) for s, _ in spans]
        self.tok_e = [_token_at(tok_starts, e) for _, e in spans]
        self.active = [c for c in cues if c.kind in ("negation", "uncertainty")]
        self.pre_cues = [c for c in self.active if c.direction in ("pre", "either")]
        self.pre_starts = [c.start for c in self.pre_cues]
        self.post_ends = [c.end for c in self.active if c.direction in ("post", "either")]

    def clause(self, pos: int, negation: bool = False) -> int:
        """Clause number of ``pos``; a negation is cut by the extra negation terminators as well."""
        return bisect_right(self.neg_term_ends if negation else self.term_ends, pos)

    def offer(self, i: int, cue: Cue, dist: int) -> None:
        """Let ``cue`` govern mention i if it is nearer than the current one (negation wins ties)."""
        cur = self.best[i]
        better = dist < cur.distance or (dist == cur.distance and cur.cue is not None
                                         and cur.cue.kind == "uncertainty" and cue.kind == "negation")
        if better:
            self.best[i] = Scoped(cue, self.cueset.flags.get((cue.start, cue.end), ""), dist)

    def apply(self, cue: Cue) -> None:
        """Scope one negation or uncertainty cue forwards or backwards, as `direction` decides."""
        first = bisect_left(self.m_starts, cue.end)
        last = bisect_right(self.m_ends, cue.start) - 1
        direction = self.direction(cue, first, last)
        if direction == "pre" and first < self.n:
            self.forward(cue, first)
        elif direction == "post" and last >= 0:
            self.backward(cue, last)

    def direction(self, cue: Cue, first: int, last: int) -> str:
        """The way a cue looks: an "either" cue looks back when a finding is close before it in its clause;
        a post uncertainty cue right before a finding looks forward ("there are likely small effusions",
        "is possibly pneumonia")."""
        tok_starts = self.tok_starts
        if cue.direction == "either":
            ok_before = last >= 0 and self.clause(self.m_starts[last]) == self.clause(cue.start) and \
                _token_at(tok_starts, cue.start) - self.tok_e[last] <= MAX_SCOPE
            return "post" if ok_before else "pre"
        if (cue.direction == "post" and cue.kind == "uncertainty" and first < self.n
                and self.tok_s[first] - _token_at(tok_starts, cue.end) <= 2
                and self.clause(self.m_starts[first]) == self.clause(cue.end)):
            return "pre"
        return cue.direction

    def forward(self, cue: Cue, first: int) -> None:
        """Pre-cue scope: the findings after the cue, in its clause, along a list. A negation runs on
        through an uncertainty cue right after a negated finding ("no consolidation concerning for
        pneumonia", "no opacity to suggest pneumonia") and then wins over it."""
        text, tok_starts, best = self.text, self.tok_starts, self.best
        m_starts, m_ends, pre_starts = self.m_starts, self.m_ends, self.pre_starts
        neg = cue.kind == "negation"
        c_tok, cl = _token_at(tok_starts, cue.end), self.clause(cue.end, neg)
        k = bisect_right(pre_starts, cue.start)
        prev_end_tok, through = c_tok, False
        for i in range(first, self.n):
            if k < len(pre_starts) and m_starts[i] >= pre_starts[k]:
                nxt = self.pre_cues[k]
                glued = (neg and nxt.kind == "uncertainty" and i > first and best[i - 1].cue is cue
                         and "," not in text[m_ends[i - 1]:nxt.start]
                         and _token_at(tok_starts, nxt.start) - self.tok_e[i - 1] <= 2)
                if not glued:
                    break
                through = True
                while k < len(pre_starts) and pre_starts[k] <= m_starts[i]:
                    k += 1
            if self.clause(m_starts[i], neg) != cl:
                break
            if self.tok_s[i] - prev_end_tok > MAX_SCOPE:
                break
            if i > first and self.size_words[i] and "," in text[m_ends[i - 1]:m_starts[i]]:
                break
            if through:
                best[i] = Scoped(cue, self.cueset.flags.get((cue.start, cue.end), ""), -1)
            else:
                self.offer(i, cue, self.tok_s[i] - c_tok)
            prev_end_tok = self.tok_e[i]

    def backward(self, cue: Cue, last: int) -> None:
        """Post-cue scope: the findings before the cue, in its clause. Further back only along a list
        (see `_breaks_list`)."""
        neg = cue.kind == "negation"
        m_starts, m_ends = self.m_starts, self.m_ends
        c_tok, cl = _token_at(self.tok_starts, cue.start), self.clause(cue.start, neg)
        k = bisect_left(self.post_ends, cue.start)
        prv = self.post_ends[k - 1] if k > 0 else None
        nxt_start = cue.start
        for i in range(last, -1, -1):
            if prv is not None and m_ends[i] <= prv or self.clause(m_starts[i], neg) != cl:
                break
            if _token_at(self.tok_starts, nxt_start) - self.tok_e[i] > MAX_SCOPE:
                break
            if self._breaks_list(cue, i, last, nxt_start):
                break
            self.offer(i, cue, c_tok - self.tok_e[i])
            nxt_start = m_starts[i]

    def _breaks_list(self, cue: Cue, i: int, last: int, nxt_start: int) -> bool:
        """Whether the words between mention i and what follows it end a post-cue scope: only commas and
        and/or/nor may stand between listed findings, and a comma only when an and/or/nor follows it
        ("pneumothorax, effusion and consolidation are not seen", but not "left effusion with overlying
        atelectasis, underlying consolidation not excluded")."""
        text, m_ends = self.text, self.m_ends
        gap = text[m_ends[i]:nxt_start]
        if i < last:
            words = [w.lower() for w in _GAP_WORD.findall(gap)]
            if any(w not in _LIST_WORDS for w in words):
                return True
            return "," in gap and not any(w in ("and", "or", "nor") for w in
                                          _GAP_WORD.findall(text[m_ends[i]:cue.start].lower()))
        return "," in gap and not _list_gap(text, m_ends[i], nxt_start, m_ends)

    def alternative(self, cue: Cue) -> None:
        """An alternative cue makes the finding right before and right after it uncertain, unless
        something else already governs them."""
        text, tok_starts, best = self.text, self.tok_starts, self.best
        last = bisect_right(self.m_ends, cue.start) - 1
        first = bisect_left(self.m_starts, cue.end)
        if last >= 0 and _token_at(tok_starts, cue.start) - self.tok_e[last] <= 1 \
                and "," not in text[self.m_ends[last]:cue.start]:
            if best[last].cue is None:
                best[last] = Scoped(Cue(cue.start, cue.end, cue.text, "uncertainty", "both"), "", 1 << 29)
        if first < self.n and self.tok_s[first] - _token_at(tok_starts, cue.end) <= 3:
            if best[first].cue is None:
                best[first] = Scoped(Cue(cue.start, cue.end, cue.text, "uncertainty", "both"), "", 1 << 29)


_GAP_WORD = re.compile(r"[A-Za-z]+(?:/[A-Za-z]+)?")
_LIST_WORDS = frozenset({"and", "or", "nor", "and/or"})


def _list_gap(text: str, a: int, b: int, mention_ends: list[int]) -> bool:
    """Between a finding and a following cue, commas are allowed only right after a listed finding:
    "Pneumothorax, effusion and consolidation are not seen" but not "Effusion present, pneumothorax not seen"."""
    ends = set(mention_ends)
    for i in range(a, b):
        if text[i] == ",":
            j = i
            while j > a and text[j - 1].isspace():
                j -= 1
            if j not in ends:
                return False
    return True


def temporal_of(matches: list[tuple[int, int, str]], cueset: CueSet, spans: list[Span], scoped: list[Scoped],
                tok_starts: list[int]) -> list[str | None]:
    """Temporal status of each mention: "resolved" (negated by a resolution word), else the nearest
    new / chronic / historical word in its clause (a few tokens away), else "chronic" after a
    pseudo-negation ("no change in ..."), else None."""
    neg = [c for c in cueset.cues if c.kind in ("negation", "uncertainty")]
    neg_starts = [c.start for c in neg]
    cands = []
    for s, e, kind in matches:
        k = bisect_left(neg_starts, e)
        if k > 0 and neg[k - 1].end > s:
            continue
        cands.append((s, e, kind))
    temps = longest_first(cands)
    for c in cueset.cues:
        if c.kind == "pseudo" and cueset.flags.get((c.start, c.end)) == "chronic":
            temps.append((c.start, c.end, "chronic"))
    temps.sort()
    t_starts = [t[0] for t in temps]
    terms = [c.end for c in cueset.cues if c.kind == "terminator"]
    out: list[str | None] = []
    for (s, e), sc in zip(spans, scoped):
        if sc.flag == "resolved":
            out.append("resolved")
            continue
        best, dist = None, MAX_TEMPORAL + 1
        lo = bisect_left(t_starts, s) - 8
        for ts, te, kind in temps[max(lo, 0):bisect_left(t_starts, e) + 8]:
            if overlaps((ts, te), (s, e)):
                d = 0
            elif te <= s:
                d = _token_at(tok_starts, s) - _token_at(tok_starts, te)
            else:
                d = _token_at(tok_starts, ts) - _token_at(tok_starts, e)
            if bisect_right(terms, min(ts, s)) != bisect_right(terms, max(te, e) - 1):
                continue
            if d < dist:
                best, dist = kind, d
        out.append(best)
    return out
