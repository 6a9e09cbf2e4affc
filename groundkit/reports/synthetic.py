"""Synthetic radiology reports with exact ground-truth mention spans.

Real reports (MIMIC-CXR) are credentialed, yet the parser's extraction and negation accuracy must be
measurable in CI. `synthetic_report` writes a report around ground-truth findings the caller chose (the
same dicts a grounding benchmark uses: category, phrase, boxes) in varied radiology wording, adds negated
findings of other categories and sometimes restates a finding in the IMPRESSION, and records where every
mention landed in the text.
"""
from __future__ import annotations

import re
from typing import Any

import numpy as np

from groundkit.reports.lexicon import MSCXR_CATEGORIES

__all__ = ["synthetic_report", "sample_findings"]

# ------------------------------------------------------------------ positive sentence templates
# {p} is the finding phrase; a template starting with {p} capitalises it.
POSITIVE_TEMPLATES: tuple[str, ...] = (
    "There is {p}.",
    "{p} is again seen.",
    "Interval development of {p}.",
    "Findings consistent with {p}.",
    "{p} is present.",
    "Redemonstration of {p}.",
    "{p} is noted.",
    "New {p}.",
    "Again noted is {p}.",
    "There has been interval increase in {p}.",
    "Possible {p}.",
    "{p}.",
)
# a positive and a negated finding in one sentence: scope must stop at the terminator / not reach back
MIXED_TEMPLATES: tuple[str, ...] = (
    "There is {p}, but no {n}.",
    "{p} without {n}.",
    "No {n}; {p} is again seen.",
    "No {n}, however there is {p}.",
    "No {n} but there is {p}.",
    "{p} is present, although there is no {n}.",
)
NEGATIVE_TEMPLATES: tuple[str, ...] = (
    "No {n}.",
    "There is no {n}.",
    "No evidence of {n}.",
    "The study is negative for {n}.",
    "{n} is not seen.",
    "No new {n}.",
    "Interval resolution of {n}.",
    "{n} has resolved.",
    "Without {n}.",
    "No definite {n} is identified.",
)
LUNG_NEGATIVE_TEMPLATES: tuple[str, ...] = ("The lungs are free of {n}.", "The lungs are clear of {n}.")
PAIR_NEGATIVE_TEMPLATES: tuple[str, ...] = (
    "No {n1} or {n2}.",
    "There is no {n1} or {n2}.",
    "No evidence of {n1} or {n2}.",
    "No {n1}, {n2}.",
)
IMPRESSION_TEMPLATES: tuple[str, ...] = (
    "{r}.",
    "Findings consistent with {r}.",
    "{r}, as described above.",
    "Persistent {r}.",
    "Findings concerning for {r}.",
)

LUNG_CATEGORIES = ("Atelectasis", "Consolidation", "Edema", "Lung Opacity", "Pneumonia")
LATERAL_NEGATIVES = ("Pleural Effusion", "Pneumothorax", "Consolidation", "Lung Opacity")

NEGATED_PHRASES: dict[str, tuple[str, ...]] = {
    "Atelectasis": ("atelectasis", "focal atelectasis", "lobar collapse"),
    "Cardiomegaly": ("cardiomegaly", "enlargement of the cardiac silhouette"),
    "Consolidation": ("focal consolidation", "consolidation", "airspace consolidation"),
    "Edema": ("pulmonary edema", "edema", "interstitial edema", "pulmonary vascular congestion"),
    "Lung Opacity": ("focal opacity", "airspace opacity", "opacities", "airspace disease"),
    "Pleural Effusion": ("pleural effusion", "effusion", "pleural effusions", "pleural fluid"),
    "Pneumonia": ("pneumonia", "focal pneumonia"),
    "Pneumothorax": ("pneumothorax", "apical pneumothorax", "PTX"),
}
# short restatements for the IMPRESSION ({s} = side of the original phrase, may be empty)
RESTATEMENTS: dict[str, tuple[str, ...]] = {
    "Atelectasis": ("{s} atelectasis", "{s} basilar atelectasis", "{s} atelectatic changes"),
    "Cardiomegaly": ("cardiomegaly", "enlarged cardiac silhouette", "enlarged heart"),
    "Consolidation": ("{s} consolidation", "{s} airspace consolidation"),
    "Edema": ("pulmonary edema", "interstitial edema", "mild pulmonary vascular congestion"),
    "Lung Opacity": ("{s} opacity", "{s} airspace opacity", "{s} opacification"),
    "Pleural Effusion": ("{s} pleural effusion", "{s} effusion"),
    "Pneumonia": ("{s} pneumonia", "{s} lung pneumonia"),
    "Pneumothorax": ("{s} pneumothorax", "{s} PTX", "{s} apical pneumothorax"),
}

FILLER_ANY: tuple[str, ...] = (
    "The trachea is midline.", "The hila are unremarkable.", "Osseous structures are intact.",
    "The visualized upper abdomen is unremarkable.", "No acute osseous abnormality.",
    "Lung volumes are low.", "The lungs are otherwise well expanded.",
    "Degenerative changes of the thoracic spine with an osteophyte of approx. 1.5 cm at T8.",
)
FILLER_HEART: tuple[str, ...] = (
    "Heart size is normal.", "The cardiomediastinal silhouette is within normal limits.",
    "The heart size is within normal limits.",
)
PREAMBLES: tuple[str, ...] = (
    "EXAMINATION: Chest PA and lateral.\nINDICATION: Shortness of breath.\nCOMPARISON: None.\n\n",
    "INDICATION: Cough and fever.\nCOMPARISON: Chest radiograph from approx. 3 months ago.\n\n",
    "HISTORY: 67-year-old with chest pain.\nTECHNIQUE: Portable AP view of the chest, 2.5 hours after surgery.\n\n",
    "Comparison: Prior study dated 04.05.2021.\n\n",
    "",
)
FINDINGS_HEADERS = ("FINDINGS:", "Findings:", "FINDINGS:\n")
IMPRESSION_HEADERS = ("IMPRESSION:", "Impression:", "CONCLUSION:", "IMPRESSION:\n")

# ------------------------------------------------------------------ sampled ground truth
_SEV = ("small", "moderate", "large", "mild", "minimal", "tiny", "extensive")
_ZONE_NOUN = {"upper": ("upper lobe", "upper zone", "apex", "lung apex"),
              "lower": ("lower lobe", "lung base", "lower zone", "base"),
              "middle": ("middle lobe", "mid lung")}
_ZONE_ADJ = {"upper": ("upper lobe", "apical", "upper zone"), "lower": ("lower lobe", "basal", "basilar"),
             "middle": ("middle lobe", "mid lung")}
PHRASE_TEMPLATES: dict[str, tuple[str, ...]] = {
    "Atelectasis": ("{side} basilar atelectasis", "linear atelectasis at the {side} base",
                    "{sev} {side} lower lobe atelectasis", "subsegmental atelectasis in the {side} lower lobe",
                    "plate-like atelectasis at the {side} base", "{side}-sided basal atelectasis",
                    "bibasilar atelectasis", "{side} lower lobe collapse", "atelectatic changes at the {side} base"),
    "Cardiomegaly": ("{sev} cardiomegaly", "cardiomegaly", "{sev} enlargement of the cardiac silhouette",
                     "enlarged heart", "enlarged cardiac silhouette"),
    "Consolidation": ("{sev} consolidation in the {side} {zone}", "patchy consolidation of the {side} {zone}",
                      "{side} {zadj} consolidation", "airspace consolidation at the {side} {zone}",
                      "focal consolidation in the {zone} of the {side} lung", "{side}-sided {zadj} consolidation"),
    "Edema": ("{sev} pulmonary edema", "bilateral perihilar edema", "{sev} interstitial edema",
              "pulmonary edema in both lungs", "{sev} pulmonary vascular congestion", "{sev} bilateral interstitial edema"),
    "Lung Opacity": ("{sev} opacity in the {side} {zone}", "{side} {zadj} opacity", "patchy opacities at the {side} {zone}",
                     "hazy opacity projecting over the {side} {zone}", "{side} {zadj} airspace opacity",
                     "opacification of the {side} {zone}", "{side} {zadj} airspace disease",
                     "ill-defined {side} {zadj} infiltrate"),
    "Pleural Effusion": ("{sev} {side} pleural effusion", "{side} pleural effusion", "{sev} {side}-sided pleural effusion",
                         "{sev} pleural effusion on the {side}", "{sev} effusion at the {side} lung base",
                         "blunting of the {side} costophrenic angle from effusion", "{sev} bilateral pleural effusions",
                         "layering {side} pleural effusion"),
    "Pneumonia": ("{side} {zadj} pneumonia", "{sev} pneumonia in the {side} {zone}", "multifocal pneumonia",
                  "{side}-sided pneumonia", "pneumonia at the {side} {zone}", "bibasilar pneumonia"),
    "Pneumothorax": ("{sev} {side} apical pneumothorax", "{side} pneumothorax", "{sev} pneumothorax at the {side} apex",
                     "{side}-sided pneumothorax", "{sev} {side} PTX", "pneumothorax in the {side} upper zone"),
}


def _pick(rng: np.random.Generator, items):
    return items[int(rng.integers(len(items)))]


def sample_findings(rng: np.random.Generator, n: int | None = None) -> list[dict[str, Any]]:
    """1-3 ground-truth findings of distinct MS-CXR categories with MS-CXR-style phrases and random boxes."""
    n = int(rng.integers(1, 4)) if n is None else n
    cats = [MSCXR_CATEGORIES[i] for i in rng.choice(len(MSCXR_CATEGORIES), size=n, replace=False)]
    out = []
    for cat in cats:
        side = _pick(rng, ("left", "right"))
        zone = _pick(rng, ("upper", "lower", "middle") if side == "right" else ("upper", "lower"))
        phrase = _pick(rng, PHRASE_TEMPLATES[cat]).format(
            sev=_pick(rng, _SEV), side=side, zone=_pick(rng, _ZONE_NOUN[zone]), zadj=_pick(rng, _ZONE_ADJ[zone]))
        x, y = rng.uniform(0, 400, 2)
        w, h = rng.uniform(40, 200, 2)
        out.append({"category": cat, "phrase": " ".join(phrase.split()),
                    "boxes": [[round(float(x), 1), round(float(y), 1), round(float(w), 1), round(float(h), 1)]]})
    return out


# ------------------------------------------------------------------ report assembly
class _Writer:
    """Appends text and records ground-truth spans as it goes (spans are exact by construction)."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0
        self.mentions: list[dict[str, Any]] = []

    def add(self, s: str) -> None:
        self.parts.append(s)
        self.length += len(s)

    def sentence(self, template: str, slots: dict[str, tuple[str, dict[str, Any]]]) -> None:
        """Write a template whose {slots} are mentions; a slot at sentence start is capitalised."""
        pos = 0
        for m in re.finditer(r"\{(\w+)\}", template):
            self.add(template[pos:m.start()])
            phrase, meta = slots[m.group(1)]
            if m.start() == 0:
                phrase = phrase[:1].upper() + phrase[1:]
            self.mentions.append({"start": self.length, "end": self.length + len(phrase), **meta})
            self.add(phrase)
            pos = m.end()
        self.add(template[pos:])

    @property
    def text(self) -> str:
        return "".join(self.parts)


def _side_of(phrase: str) -> str:
    p = phrase.lower()
    if re.search(r"\b(bilateral|both|bibasilar)\b", p):
        return "bilateral"
    for side in ("left", "right"):
        if re.search(rf"\b{side}\b", p):
            return side
    return ""


def _negated_phrase(rng: np.random.Generator, cat: str, with_side: bool) -> tuple[str, str | None]:
    """(phrase, side) of a negated finding; side is set when the phrase is lateralised."""
    base = _pick(rng, NEGATED_PHRASES[cat])
    if with_side and cat in LATERAL_NEGATIVES and rng.random() < 0.4:
        side = _pick(rng, ("left", "right"))
        if rng.random() < 0.5:
            return f"{base} on the {side}", side
        return f"{side} {base}", side
    return base, None


def _meta(cat: str, negated: bool, boxes, index: int | None) -> dict[str, Any]:
    return {"category": cat, "negated": negated, "boxes": [list(b) for b in boxes] if not negated else [],
            "finding_index": index}


def synthetic_report(rng: np.random.Generator, findings: list[dict]) -> dict:
    """A report for ``findings`` (dicts with category, phrase, boxes) with exact mention spans.

    Returns {"text": str, "mentions": [{"start", "end", "category", "negated", "boxes", "finding_index"}]}:
    every positive finding once in FINDINGS (sometimes restated in IMPRESSION in other words), plus 1-2
    negated findings of categories not present; negated mentions have no boxes and finding_index None.
    """
    present = {f["category"] for f in findings}
    others = [c for c in MSCXR_CATEGORIES if c not in present]
    n_neg = min(len(others), int(rng.integers(1, 3)))
    neg_cats = [others[i] for i in rng.choice(len(others), size=n_neg, replace=False)] if n_neg else []

    w = _Writer()
    w.add(_pick(rng, PREAMBLES))
    w.add(_pick(rng, FINDINGS_HEADERS) + " ")
    sentences = _findings_sentences(rng, findings, neg_cats)
    order = rng.permutation(len(sentences))
    fillers = list(FILLER_ANY)
    if not present & {"Cardiomegaly", "Edema"}:
        fillers += list(FILLER_HEART)
    n_fill = int(rng.integers(0, 3))
    chosen_fill = [fillers[i] for i in rng.choice(len(fillers), size=n_fill, replace=False)]
    items: list[tuple[str, dict]] = [sentences[i] for i in order] + [(f, {}) for f in chosen_fill]
    for k, (template, slots) in enumerate(items):
        if k:
            w.add("\n" if rng.random() < 0.15 else " ")
        w.sentence(template, slots)

    _write_impression(rng, w, findings, neg_cats)
    return {"text": w.text, "mentions": w.mentions}


def _findings_sentences(rng: np.random.Generator, findings: list[dict], neg_cats: list[str]
                        ) -> list[tuple[str, dict[str, tuple[str, dict[str, Any]]]]]:
    """FINDINGS' sentences (template, slots) in draw order: sometimes one sentence with both polarities,
    one per positive, the negatives alone or as a pair."""
    sentences: list[tuple[str, dict[str, tuple[str, dict[str, Any]]]]] = []
    pos_slots = [(f["phrase"], _meta(f["category"], False, f.get("boxes", []), i)) for i, f in enumerate(findings)]
    neg_slots = []
    for cat in neg_cats:
        phrase, _ = _negated_phrase(rng, cat, with_side=True)
        neg_slots.append((phrase, _meta(cat, True, [], None)))

    pos_queue, neg_queue = list(pos_slots), list(neg_slots)
    if pos_queue and neg_queue and rng.random() < 0.4:  # one sentence with both polarities
        sentences.append((_pick(rng, MIXED_TEMPLATES), {"p": pos_queue.pop(0), "n": neg_queue.pop(0)}))
    for slot in pos_queue:
        sentences.append((_pick(rng, POSITIVE_TEMPLATES), {"p": slot}))
    if len(neg_queue) == 2 and rng.random() < 0.5:
        sentences.append((_pick(rng, PAIR_NEGATIVE_TEMPLATES), {"n1": neg_queue[0], "n2": neg_queue[1]}))
        neg_queue = []
    for slot in neg_queue:
        lung = slot[1]["category"] in LUNG_CATEGORIES
        templates = NEGATIVE_TEMPLATES + (LUNG_NEGATIVE_TEMPLATES if lung else ())
        sentences.append((_pick(rng, templates), {"n": slot}))
    return sentences


def _write_impression(rng: np.random.Generator, w: _Writer, findings: list[dict], neg_cats: list[str]) -> None:
    """IMPRESSION (numbered or not): some positives restated in other words, or a negative repeated."""
    w.add("\n\n" + _pick(rng, IMPRESSION_HEADERS) + " ")
    numbered = rng.random() < 0.3
    imp: list[tuple[str, dict]] = []
    for i, f in enumerate(findings):
        if rng.random() < 0.6:
            side = _side_of(f["phrase"])
            r = " ".join(_pick(rng, RESTATEMENTS[f["category"]]).format(s=side).split())
            imp.append((_pick(rng, IMPRESSION_TEMPLATES), {"r": (r, _meta(f["category"], False, f.get("boxes", []), i))}))
    if neg_cats and (not imp or rng.random() < 0.3):
        cat = neg_cats[0]
        phrase, _ = _negated_phrase(rng, cat, with_side=False)
        imp.append(("No {n}.", {"n": (phrase, _meta(cat, True, [], None))}))
    if not imp:
        imp.append(("Findings as above.", {}))
    for k, (template, slots) in enumerate(imp):
        if numbered:
            w.add(("\n" if k else "") + f"{k + 1}. ")
        elif k:
            w.add(" ")
        w.sentence(template, slots)
