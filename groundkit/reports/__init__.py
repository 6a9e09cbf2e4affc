"""Radiology report -> findings to ground: sections, sentences, noun-phrase mentions with exact spans,
side and location, NegEx/ConText-style negation, uncertainty and temporal status, word senses as data
(``lexicon.yaml``, extensible with a terms file) and de-duplication across sections. See docs/report-parser.md.

    from groundkit.reports import parse_report
    rep = parse_report(text, use_spacy=False)
    for f in rep.positive:
        print(f.category, f.phrase, f.side, f.location, f.status, f.temporal)

Pure Python (PyYAML for the vocabulary, numpy only for the synthetic generator); spaCy is optional and only
moves sentence ends. Work is linear in the text; reports over ``MAX_REPORT_CHARS`` are refused.
"""
from groundkit.reports.lexicon import LexiconError
from groundkit.reports.parse import MAX_REPORT_CHARS, Finding, Mention, ParsedReport, parse_report
from groundkit.reports.synthetic import sample_findings, synthetic_report

__all__ = ["parse_report", "Finding", "Mention", "ParsedReport", "synthetic_report", "sample_findings",
           "LexiconError", "MAX_REPORT_CHARS"]
