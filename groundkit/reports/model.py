"""Data model of a parsed report (cues, mentions, findings, the parsed report) and the small span helpers
shared by the parsing stages."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Span = tuple[int, int]

__all__ = ["Cue", "Finding", "Mention", "ParsedReport", "Span", "longest_first", "only_whitespace", "overlaps",
           "trim", "unique"]


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
    location: list[str] = field(default_factory=list)  # normalised: "lower lobe", "base", "costophrenic angle"
    side_span: Span | None = None  # where the side was read (inside the mention or elsewhere in the sentence)
    location_spans: list[Span] = field(default_factory=list)
    phrase: str = ""  # what to ground: the mention with its side/location words ("" = ``text``)
    temporal: str | None = None  # "new" | "chronic" | "resolved" | "historical" | None
    indication: bool = False  # asked about (INDICATION/HISTORY section, "r/o", "evaluate for"): not a finding

    @property
    def side(self) -> str | None:
        """"left" | "right" | "bilateral" | None (same value as ``laterality``)."""
        return self.laterality

    @property
    def status(self) -> str:
        """"absent" | "uncertain" | "present"."""
        return "absent" if self.negated else "uncertain" if self.uncertain else "present"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy (spans as lists)."""
        return {
            "text": self.text, "start": self.start, "end": self.end, "category": self.category,
            "observation": self.observation, "laterality": self.laterality, "zones": list(self.zones),
            "modifiers": list(self.modifiers), "negated": self.negated, "uncertain": self.uncertain,
            "negation_cue": self.negation_cue, "uncertainty_cue": self.uncertainty_cue,
            "sentence": self.sentence, "sentence_span": list(self.sentence_span), "section": self.section,
            "core": list(self.core), "side": self.laterality, "location": list(self.location),
            "side_span": list(self.side_span) if self.side_span else None,
            "location_spans": [list(s) for s in self.location_spans], "phrase": self.phrase or self.text,
            "temporal": self.temporal, "indication": self.indication, "status": self.status,
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
        """What ``ground_report`` grounds: the primary mention with its side and location words
        ("consolidation in the right lung base"; a side read elsewhere in the sentence is appended:
        "opacity in the right base" for "Opacity is seen in the right base")."""
        return self.primary.phrase or self.primary.text

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
    def side(self) -> str | None:
        return self.laterality

    @property
    def location(self) -> list[str]:
        return unique(z for m in self.mentions for z in m.location)

    @property
    def temporal(self) -> str | None:
        if self.primary.temporal is not None:
            return self.primary.temporal
        return next((m.temporal for m in self.mentions if m.temporal), None)

    @property
    def indication(self) -> bool:
        """Only asked about (every mention is in INDICATION/HISTORY or behind "r/o", "evaluate for")."""
        return all(m.indication for m in self.mentions)

    @property
    def status(self) -> str:
        return "absent" if self.negated else "uncertain" if self.uncertain else "present"

    @property
    def zones(self) -> list[str]:
        return unique(z for m in self.mentions for z in m.zones)

    @property
    def modifiers(self) -> list[str]:
        return unique(w for m in self.mentions for w in m.modifiers)

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
            "mentions": [m.to_dict() for m in self.mentions], "side": self.side, "location": self.location,
            "side_span": list(self.primary.side_span) if self.primary.side_span else None,
            "location_spans": [list(s) for s in self.primary.location_spans], "temporal": self.temporal,
            "indication": self.indication, "status": self.status,
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
        """Findings that are present (uncertain ones included, see ``Finding.uncertain``); findings that
        were only asked about (``Finding.indication``) are not."""
        return [f for f in self.findings if not f.negated and not f.indication]

    @property
    def negated(self) -> list[Finding]:
        return [f for f in self.findings if f.negated and not f.indication]

    @property
    def indications(self) -> list[Finding]:
        """Findings only asked about ("INDICATION: r/o pneumonia"): listed, never grounded or scored."""
        return [f for f in self.findings if f.indication]

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "sections": {k: list(v) for k, v in self.sections.items()},
            "sentences": [list(s) for s in self.sentences],
            "sentence_backend": self.sentence_backend,
            "findings": [f.to_dict() for f in self.findings],
        }


def unique(items) -> list[str]:
    seen: dict[str, None] = {}
    for x in items:
        seen.setdefault(x, None)
    return list(seen)


def trim(text: str, start: int, end: int) -> Span:
    """Span without surrounding whitespace (empty spans collapse onto ``start``)."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def overlaps(a: Span, b: Span) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def longest_first(cands: list[tuple[int, int, Any]]) -> list[tuple[int, int, Any]]:
    """Non-overlapping subset, longest match first (ties: earlier, then lexicon order); text order."""
    from groundkit.reports.matcher import longest_first as _lf

    return _lf(cands)


def only_whitespace(text: str, a: int, b: int) -> bool:
    return a <= b and text[a:b].strip() == ""
