"""De-duplication: mentions of one finding (e.g. in FINDINGS and again in IMPRESSION) are grouped into one
:class:`Finding`, keeping apart different sides, zones and distinct objects.

Linear: findings are bucketed by (observation, polarity), each keeps a small summary of its mentions
(sides, zone groups, device words, sentences) so that "compatible with every mention" is checked against
the summary, and only the most recent ``MAX_CANDIDATES`` findings of a bucket are tried.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from groundkit.reports.location import TOKEN
from groundkit.reports.model import Finding, Mention, Span

__all__ = ["group_findings"]

MAX_CANDIDATES = 32

_ZONE_GROUP = {
    "upper": "upper", "apical": "upper", "apex": "upper", "apices": "upper", "biapical": "upper",
    "lower": "lower", "basal": "lower", "basilar": "lower", "base": "lower", "bases": "lower",
    "bibasilar": "lower", "bibasal": "lower", "costophrenic": "lower", "retrocardiac": "lower",
    "subpulmonic": "lower", "middle": "middle", "mid": "middle", "lingula": "middle", "lingular": "middle",
    "perihilar": "hilar", "hilar": "hilar", "infrahilar": "hilar", "suprahilar": "hilar",
}
# observations whose synonyms name different objects rather than one finding worded differently
_DISTINCT_THINGS = frozenset({"Support Devices", "Lung Lesion", "Fracture", "Pleural Other"})
_GENERIC_HEADS = frozenset({"tube", "line", "catheter", "lead", "wire", "device"})


def _core_words(m: Mention) -> frozenset[str]:
    """Distinctive words of the lexicon match, singular: "ET tube" -> {"et"}, "pacemaker leads" ->
    {"pacemaker"}; all words when only generic heads are left ("catheter")."""
    lo, hi = m.core[0] - m.start, m.core[1] - m.start
    words = {w.lower().rstrip("s") for w in TOKEN.findall(m.text[lo:hi])}
    return frozenset((words - _GENERIC_HEADS) or words)


def _groups(m: Mention) -> frozenset[str]:
    return frozenset(_ZONE_GROUP.get(z, z) for z in m.zones)


@dataclass
class _Home:
    """A finding and what every one of its mentions says (to test a newcomer against all at once)."""

    finding: Finding
    sides: dict[str | None, set[Span]] = field(default_factory=dict)  # side -> sentences stating it
    zone_groups: set[frozenset[str]] = field(default_factory=set)  # distinct non-empty groups
    things: set[frozenset[str]] = field(default_factory=set)
    sentences: set[Span] = field(default_factory=set)

    def add(self, m: Mention) -> None:
        self.finding.mentions.append(m)
        self.sides.setdefault(m.laterality, set()).add(m.sentence_span)
        g = _groups(m)
        if g:
            self.zone_groups.add(g)
        if m.observation in _DISTINCT_THINGS:
            self.things.add(_core_words(m))
        self.sentences.add(m.sentence_span)

    def accepts(self, m: Mention) -> bool:
        """Same side (an unstated side matches a stated one only within a sentence: "blunting of the left
        costophrenic angle from effusion"), zones that do not contradict (right upper vs right lower lobe
        opacity stay two findings), and for devices/lesions a shared word."""
        for side, sents in self.sides.items():
            if side == m.laterality:
                continue
            if side is None or m.laterality is None:
                if sents != {m.sentence_span}:
                    return False
                continue
            return False
        g = _groups(m)
        if g and any(not (g & h) for h in self.zone_groups):
            return False
        if m.observation in _DISTINCT_THINGS:
            w = _core_words(m)
            if any(not (w & t) for t in self.things):
                return False
        return True


def group_findings(mentions: list[Mention]) -> list[Finding]:
    findings: list[Finding] = []
    buckets: dict[tuple[str, bool, bool], list[_Home]] = {}
    for m in mentions:
        homes = buckets.setdefault((m.observation, m.negated, m.indication), [])
        fits = [h for h in homes[-MAX_CANDIDATES:] if h.accepts(m)]
        # a finding already mentioned in this sentence is the better home ("... from effusion")
        home = next((h for h in fits if m.sentence_span in h.sentences), fits[0] if fits else None)
        if home is None:
            home = _Home(Finding([]))
            homes.append(home)
            findings.append(home.finding)
        home.add(m)
    return findings
