"""De-duplication: mentions of one finding (e.g. in FINDINGS and again in IMPRESSION) are grouped into one
:class:`Finding`, keeping apart different sides, zones and distinct objects."""
from __future__ import annotations

from groundkit.reports.mentions import TOKEN
from groundkit.reports.model import Finding, Mention

__all__ = ["group_findings"]

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


def _core_words(m: Mention) -> set[str]:
    """Distinctive words of the lexicon match, singular: "ET tube" -> {"et"}, "pacemaker leads" ->
    {"pacemaker"}; all words when only generic heads are left ("catheter")."""
    lo, hi = m.core[0] - m.start, m.core[1] - m.start
    words = {w.lower().rstrip("s") for w in TOKEN.findall(m.text[lo:hi])}
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


def group_findings(mentions: list[Mention]) -> list[Finding]:
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
