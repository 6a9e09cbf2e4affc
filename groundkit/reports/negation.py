"""NegEx-style cues of a sentence (negation, uncertainty, pseudo-negation, terminators) and their scopes:
which mention each negation/uncertainty cue applies to."""
from __future__ import annotations

from groundkit.reports import lexicon as L
from groundkit.reports.model import Cue, Span, longest_first, only_whitespace, overlaps

__all__ = ["assign_cues", "find_cues"]

_CUE_GROUPS: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (L.NEGATION_PRE, "negation", "pre"),
    (L.NEGATION_POST, "negation", "post"),
    (L.NEGATION_EITHER, "negation", "either"),
    (L.UNCERTAINTY_PRE, "uncertainty", "pre"),
    (L.UNCERTAINTY_POST, "uncertainty", "post"),
    (L.UNCERTAINTY_BOTH, "uncertainty", "both"),
    (L.PSEUDO_NEGATIONS, "pseudo", ""),
    (L.TERMINATORS, "terminator", ""),
)


def find_cues(text: str, span: Span, cores: list[tuple[int, int, str]]) -> list[Cue]:
    """Cues of the sentence, longest first; a cue inside an observation match ("no acute ... process",
    "heart is not enlarged") belongs to that match and is dropped."""
    cands = []
    for patterns, kind, direction in _CUE_GROUPS:
        for pattern in patterns:
            for m in L.compile_pattern(pattern).finditer(text, *span):
                if m.end() > m.start() and not any(overlaps(m.span(), (c[0], c[1])) for c in cores):
                    cands.append((m.start(), m.end(), (kind, direction)))
    return [Cue(s, e, text[s:e], kd[0], kd[1]) for s, e, kd in longest_first(cands)]


def _clause_of(pos: int, terminators: list[Cue]) -> int:
    """Index of the clause containing ``pos``: terminators split a sentence into clauses."""
    return sum(1 for t in terminators if t.end <= pos)


def _list_comma_ok(text: str, a: int, b: int, mention_ends: list[int]) -> bool:
    """Between a finding and a following cue, commas are allowed only as list separators:
    "Pneumothorax, effusion and consolidation are not seen" but not "Effusion present, pneumothorax not seen"."""
    for i in range(a, b):
        if text[i] == "," and not any(e <= i and only_whitespace(text, e, i) for e in mention_ends):
            return False
    return True


def assign_cues(text: str, spans: list[Span], cues: list[Cue]) -> list[tuple[Cue | None, int]]:
    """For each mention span, the nearest cue whose scope covers it (or None) and its distance."""
    terms = [c for c in cues if c.kind == "terminator"]
    active = [c for c in cues if c.kind in ("negation", "uncertainty")]
    ends = [e for _, e in spans]
    clause = [_clause_of(s, terms) for s, _ in spans]

    def post_ok(cue: Cue, i: int) -> bool:
        s, e = spans[i]
        return (e <= cue.start and clause[i] == _clause_of(cue.start, terms)
                and _list_comma_ok(text, e, cue.start, ends))

    def pre_ok(cue: Cue, i: int) -> bool:
        return cue.end <= spans[i][0] and clause[i] == _clause_of(cue.end, terms)

    best: list[tuple[Cue | None, int]] = [(None, 1 << 30)] * len(spans)

    def offer(i: int, cue: Cue, dist: int) -> None:
        cur, d = best[i]
        if dist < d or (dist == d and cur is not None and cur.kind == "uncertainty" and cue.kind == "negation"):
            best[i] = (cue, dist)

    for cue in active:
        before = [i for i in range(len(spans)) if post_ok(cue, i)]
        after = [i for i in range(len(spans)) if pre_ok(cue, i)]
        if cue.direction == "either":
            direction = "post" if before else "pre"
        else:
            direction = cue.direction
        if direction in ("post",):
            for i in before:
                offer(i, cue, cue.start - spans[i][1])
        if direction == "both" and before:
            i = max(before, key=lambda i: spans[i][1])
            offer(i, cue, cue.start - spans[i][1])
        if direction in ("pre", "both"):
            for i in after:
                offer(i, cue, spans[i][0] - cue.end)
    return best
