"""Vocabulary of the report parser, kept as data so it can be read, extended and tested on its own.

Observation synonyms and cues are written in a tiny pattern syntax (compiled by `compile_pattern`) instead
of raw regular expressions, because a reviewer should be able to check a synonym list at a glance:

* words are separated by single spaces and match across any run of spaces, newlines or hyphens
  ("air_space disease" matches "air space disease" and "air-space disease");
* ``a|b|c`` is a choice of words;
* a trailing ``?`` makes a word (or a choice) optional;
* ``_`` joins several words into one choice: ``evidence_of|signs_of`` ;
* ``ADV`` is a slot for one degree adverb (mildly, markedly, ...; ``ADV?`` when optional), ``SIDE`` one for
  left/right/bilateral.

Observations are the 14 CheXpert labels; `CATEGORY_OF` maps them onto the 8 MS-CXR categories where one
exists (the others keep their CheXpert name as category). Cue lists follow the NegEx / CheXpert-labeler
conventions (pre-negation, post-negation, uncertainty, pseudo-negation, scope terminators); they are facts
about radiology wording re-expressed here, not copied code.
"""
from __future__ import annotations

import re
from functools import cache

MSCXR_CATEGORIES: tuple[str, ...] = (
    "Atelectasis", "Cardiomegaly", "Consolidation", "Edema",
    "Lung Opacity", "Pleural Effusion", "Pneumonia", "Pneumothorax",
)

CHEXPERT_OBSERVATIONS: tuple[str, ...] = (
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Lesion", "Lung Opacity", "Edema",
    "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
    "Fracture", "Support Devices",
)

# CheXpert observation -> MS-CXR category (identity for the 8 shared labels, else the CheXpert name).
CATEGORY_OF: dict[str, str] = {obs: obs for obs in CHEXPERT_OBSERVATIONS}

_BE = "is|are|was|were|appears|appear|remains|remain|seems|seem"

OBSERVATIONS: dict[str, tuple[str, ...]] = {
    # A global normal statement; its own "no" is part of the mention and does not negate it.
    "No Finding": (
        "no evidence_of|signs_of? acute cardiopulmonary|intrathoracic|cardiothoracic|chest|pulmonary? "
        "process|abnormality|abnormalities|disease|findings|pathology",
        "no evidence_of? cardiopulmonary|intrathoracic process|abnormality|abnormalities|disease",
        "no active disease",
        "normal chest? radiograph|radiographs|x-ray|study|examination",
        "unremarkable chest radiograph|x-ray|study",
    ),
    "Enlarged Cardiomediastinum": (
        "enlarged|widened|widening cardiomediastinal|mediastinal silhouette|contour|contours",
        "enlarged|widened mediastinum",
        "mediastinal|cardiomediastinal widening|enlargement",
        "widening|enlargement of_the mediastinum|cardiomediastinal_silhouette|mediastinal_silhouette",
        f"cardiomediastinal|mediastinal silhouette|contour|contours {_BE}? not? ADV? enlarged|widened",
        f"mediastinum {_BE}? not? ADV? enlarged|widened",
    ),
    "Cardiomegaly": (
        "cardiomegaly",
        "cardiac enlargement",
        "enlarged|increased heart|heart_size|cardiac_silhouette|cardiac_size",
        "enlargement of_the heart|cardiac_silhouette",
        f"heart|cardiac_silhouette|heart_size|cardiac_size size? {_BE}? not? ADV? enlarged|increased",
    ),
    "Lung Lesion": (
        "nodular opacity|opacities|density|densities",
        "nodule|nodules|mass|masses|lesion|lesions",
        "neoplasm|neoplasms|tumor|tumors|tumour|tumours|malignancy|carcinoma",
    ),
    "Lung Opacity": (
        "opacity|opacities|opacification|opacifications|opacified",
        "airspace|air_space disease|process",
        "infiltrate|infiltrates|infiltration|infiltrative_process",
        "ground_glass opacity|opacities|opacification",
        "density|densities|haziness",
        "interstitial markings|pattern|opacities",
        "reticular markings|pattern",
        "reticulation",
        "parenchymal? scarring|scar",
        "peribronchial thickening|cuffing",
    ),
    "Edema": (
        "pulmonary|interstitial|alveolar|airspace? edema|oedema",
        "edematous",
        "pulmonary? vascular congestion|engorgement",
        "pulmonary? congestion",
        "congestive heart failure",
        "chf",
        "fluid overload",
        "cephalization",
        "kerley b? lines",
    ),
    "Consolidation": (
        "consolidation|consolidations|consolidative|consolidated",
        "consolidative opacity|opacities",
    ),
    "Pneumonia": (
        "pneumonia|pneumonias|bronchopneumonia|pneumonic",
        "infection|infections",
        "infectious process|etiology",
    ),
    "Atelectasis": (
        "atelectasis|atelectases|atelectatic",
        "atelectatic changes|change|opacity|opacities",
        "collapse|collapsed",
        "volume loss",
    ),
    "Pneumothorax": (
        "pneumothorax|pneumothoraces|pneumothoraxes|ptx|hydropneumothorax",
    ),
    "Pleural Effusion": (
        "pleural? effusion|effusions",
        "pleural fluid",
        "fluid in_the pleural space",
        "hydrothorax",
        "blunting of_the SIDE? costophrenic angle|angles|sulcus|sulci",
        "blunted SIDE? costophrenic angle|angles|sulcus|sulci",
    ),
    "Pleural Other": (
        "pleural thickening|plaque|plaques|scarring|scar|calcification|calcifications|reaction",
        "pleuroparenchymal scarring|thickening",
        "fibrothorax",
        "apical cap|capping",
    ),
    "Fracture": (
        "fracture|fractures|fractured|fx",
    ),
    "Support Devices": (
        "pacemaker|pacemakers|pacer|defibrillator|icd|aicd",
        "pacemaker|pacer|icd leads|lead|wires",
        "endotracheal tube|tubes",
        "et_tube|ett",
        "tracheostomy tube?",
        "nasogastric|orogastric|feeding|enteric|chest|dobhoff|ng|og tube|tubes",
        "central_venous|central line|lines|catheter|catheters",
        "picc line|lines?",
        "swan_ganz|pulmonary_artery catheter",
        "catheter|catheters",
        "port-a-cath|portacath|mediport",
        "sternotomy|sternal wires",
        "median sternotomy",
        "surgical clips",
        "support device|devices",
    ),
}

# --------------------------------------------------------------------------------------------
# words that describe where a finding is and how it looks
# --------------------------------------------------------------------------------------------
LATERALITY: dict[str, str] = {
    "left": "left", "right": "right", "left-sided": "left", "right-sided": "right",
    "bilateral": "bilateral", "bilaterally": "bilateral", "both": "bilateral", "bilat": "bilateral",
    "bibasilar": "bilateral", "bibasal": "bilateral", "biapical": "bilateral",
}

ZONES: frozenset[str] = frozenset({
    "upper", "lower", "middle", "mid", "apical", "apex", "apices", "basal", "basilar", "base", "bases",
    "bibasilar", "bibasal", "biapical", "perihilar", "hilar", "infrahilar", "suprahilar", "retrocardiac",
    "costophrenic", "lingula", "lingular", "subpleural", "subpulmonic",
})

MODIFIERS: frozenset[str] = frozenset({
    # size / severity
    "small", "moderate", "large", "mild", "severe", "tiny", "trace", "minimal", "extensive", "massive",
    "significant", "substantial", "marked", "slight", "moderate-sized", "small-to-moderate",
    "moderate-to-large", "mildly", "moderately", "severely", "slightly", "minimally", "markedly",
    # shape / pattern
    "patchy", "focal", "multifocal", "linear", "subsegmental", "segmental", "lobar", "plate-like",
    "platelike", "plate", "discoid", "bandlike", "band-like", "streaky", "hazy", "diffuse", "subtle", "faint",
    "dense", "ill-defined", "vague", "confluent", "reticular", "reticulonodular", "nodular", "ground-glass",
    "airspace", "air-space", "interstitial", "alveolar", "parenchymal", "calcified", "cavitary", "spiculated",
    "loculated", "layering", "tension", "rib", "ribs", "clavicular", "vertebral", "compression",
    "displaced", "nondisplaced", "non-displaced", "healed", "healing",
    # time course
    "new", "increasing", "increased", "decreasing", "decreased", "worsening", "worsened", "improving",
    "improved", "persistent", "persisting", "stable", "unchanged", "residual", "chronic", "acute", "early",
    "developing", "known", "underlying", "recurrent", "evolving", "old",
    # position words that are not zones
    "anterior", "posterior", "lateral", "medial", "peripheral", "central",
})

# Anatomy nouns that may follow a laterality/zone word inside a finding noun phrase.
ANATOMY: frozenset[str] = frozenset({
    "lung", "lungs", "lobe", "lobes", "zone", "zones", "field", "fields", "hemithorax", "hemithoraces",
    "angle", "angles", "sulcus", "sulci", "side", "aspect", "aspects", "portion", "region", "segment",
    "hilum", "hila", "chest", "sided", "pulmonary", "pleural", "space", "thorax", "parenchyma",
})

# Prepositions that open a trailing location phrase: "consolidation of the right lung base".
LOCATION_PREPOSITIONS: tuple[str, ...] = (
    "projecting over", "projecting at", "of", "in", "at", "within", "involving", "on", "over", "along",
    "overlying", "throughout",
)
DETERMINERS: frozenset[str] = frozenset({"the", "both", "a"})
CONNECTORS: frozenset[str] = frozenset({"to", "and", "or"})  # "small to moderate", "left and right"

# --------------------------------------------------------------------------------------------
# negation / uncertainty cues (NegEx / CheXpert-labeler style)
# --------------------------------------------------------------------------------------------
_COP = "is|are|was|were|has_been|have_been"

NEGATION_PRE: tuple[str, ...] = (
    "no", "without", "free of", "clear of", "negative for", "absence of", "absent",
    "no evidence_of|signs_of|sign_of|findings_of", "no radiographic|definite|convincing|significant evidence of",
    "without evidence|signs of", "no definite|convincing|significant|obvious|visible",
    "no new", "no longer", "no residual", "no recurrent", "resolution of", "interval resolution of",
    "neither", "nor", "not", "rather than",
)
NEGATION_POST: tuple[str, ...] = (
    f"{_COP} not seen|identified|visualized|appreciated|demonstrated|evident|present|detected|noted",
    f"{_COP}? no longer seen|identified|visualized|appreciated|evident|present|noted",
    "has|have cleared", f"{_COP}|has|have resolved",
    "is|are|was|were absent", f"{_COP} excluded|ruled_out", "ruled out",
)
# Cues that usually follow their finding ("pneumothorax not seen") but may also lead ("resolved effusion").
NEGATION_EITHER: tuple[str, ...] = (
    "not seen|identified|visualized|appreciated|demonstrated|evident|detected", "resolved",
)

UNCERTAINTY_PRE: tuple[str, ...] = (
    "may|might|could|can represent|reflect|indicate|be", "possible", "possibly", "probable", "probably",
    "questionable", "question of", "suspicious for", "suspicion for|of", "suspect", "suspected",
    "concerning for", "concern for", "likely", "most|more likely", "presumed", "presumably",
    "differential diagnosis|considerations? includes|include", "differential",
    "cannot|can't exclude", "cannot|can't rule out", "can not exclude", "can not rule out",
    "rule out", "r/o", "evaluate|eval|evaluation for", "equivocal", "indeterminate", "borderline", "suggestive of",
    "suggesting", "suggests",
)
UNCERTAINTY_POST: tuple[str, ...] = (
    "cannot|can't be excluded|ruled_out", "can not be excluded|ruled_out",
    "cannot|can't be entirely|completely excluded|ruled_out",
    "is|are? not excluded|ruled_out", "not entirely|completely excluded",
    "is|are possible|suspected|questioned|questionable|likely|not_excluded",
)
# "atelectasis versus pneumonia": both sides are uncertain.
UNCERTAINTY_BOTH: tuple[str, ...] = ("versus", "vs", "vs.")

# Look like negations but assert the finding ("no change in the left effusion").
PSEUDO_NEGATIONS: tuple[str, ...] = (
    "no definite|significant|appreciable|interval? interval|significant? change|changes",
    "no increase|decrease|worsening|progression|improvement",
    "without change|interval_change", "not changed", "not only", "not significantly changed",
)

# End the scope of a cue inside a sentence.
TERMINATORS: tuple[str, ...] = (
    "but", "however", "although", "though", "whereas", "which", "except", "aside from", "apart from",
    "with the exception of", "otherwise", "there is|are|was|were", "there has|have been", ";",
    "and the|a|an",  # "no pneumothorax is seen and the left lower lobe opacity persists": a new clause
)

ABBREVIATIONS: frozenset[str] = frozenset({
    "approx", "e.g", "i.e", "vs", "dr", "mr", "mrs", "ms", "fig", "incl", "resp", "a.m", "p.m",
    "etc", "cf", "pt", "hx", "sx", "dx",
})

ADVERBS: tuple[str, ...] = (
    "mildly", "moderately", "severely", "markedly", "slightly", "minimally", "significantly", "again",
    "now", "still", "borderline", "massively", "substantially", "somewhat", "probably", "likely",
)

# --------------------------------------------------------------------------------------------
# pattern compiler
# --------------------------------------------------------------------------------------------
_SEP = r"[\s\-]+"
_SPECIAL = {
    "ADV": "(?:" + "|".join(ADVERBS) + ")",
    "SIDE": "(?:left|right|bilateral)",
}


def _choice_regex(token: str) -> str:
    """Regex of one pattern token: a choice of words, each possibly several ``_``-joined words."""
    if token in _SPECIAL:
        return _SPECIAL[token]
    alts = sorted(token.split("|"), key=len, reverse=True)  # longer first: alternation is leftmost-first
    parts = [_SEP.join(re.escape(w) for w in alt.split("_")) for alt in alts]
    return "(?:" + "|".join(parts) + ")"


def pattern_regex(pattern: str) -> str:
    """Regex text of one pattern (see the module docstring), bounded by word edges."""
    out, need_sep = [], False
    for raw in pattern.split(" "):
        optional = raw.endswith("?") and len(raw) > 1 and raw != "?"
        tok = raw[:-1] if optional else raw
        body = _choice_regex(tok)
        if optional:
            piece = f"(?:{_SEP}{body})?" if need_sep else f"(?:{body}{_SEP})?"
            out.append(piece)
            continue
        out.append(f"{_SEP}{body}" if need_sep else body)
        need_sep = True
    text = "".join(out)
    left = r"(?<![\w])" if pattern[:1].isalnum() else ""
    right = r"(?![\w])" if pattern.rstrip("?")[-1:].isalnum() else ""
    return f"{left}{text}{right}"


@cache
def compile_pattern(pattern: str) -> re.Pattern[str]:
    """One pattern, case-insensitive. The parser matches synonyms one by one and keeps the longest, since a
    regex alternation stops at its first matching branch ("pacemaker" before "pacemaker leads")."""
    return re.compile(pattern_regex(pattern), re.IGNORECASE)


