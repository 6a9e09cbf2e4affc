"""Radiology report -> findings to ground: sections, sentences, noun-phrase mentions with exact spans,
laterality/zones/modifiers, NegEx-style negation and uncertainty, and de-duplication across sections.

    from groundkit.reports import parse_report
    rep = parse_report(text, use_spacy=False)
    for f in rep.positive:
        print(f.category, f.phrase, f.laterality, f.uncertain)

Pure Python (numpy only for the synthetic generator); spaCy is optional and only moves sentence ends.
"""
from groundkit.reports.parse import Finding, Mention, ParsedReport, parse_report
from groundkit.reports.synthetic import sample_findings, synthetic_report

__all__ = ["parse_report", "Finding", "Mention", "ParsedReport", "synthetic_report", "sample_findings"]
