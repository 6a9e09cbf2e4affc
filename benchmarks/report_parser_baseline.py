"""The field's general-purpose baseline on the same labelled sets and the same scoring as groundkit's parser.

    python -m venv /tmp/msvenv && /tmp/msvenv/bin/pip install medspacy pyyaml
    PYTHONPATH=. /tmp/msvenv/bin/python benchmarks/report_parser_baseline.py

medspaCy pins spaCy < 3.8, so it lives in a virtual environment of its own; this script imports only
``groundkit.reports`` (no torch). The baseline is medspaCy's default pipeline (PyRuSH sentences, target
matcher, ConText with its default rules) with plain target rules for the 8 MS-CXR categories (the common words
for each, written below, not groundkit's lexicon), and a side taken from the side words of the target's
sentence (the nearest one; left and right together are bilateral). A negated target is absent; uncertain or
hypothetical is uncertain; anything else present. Scoring is ``groundkit.reports.scoring`` (report-level labels
per category), as in ``benchmarks/report_parser.py``, which prints groundkit's own figures on the same sets.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from groundkit.reports.lexicon import MSCXR_CATEGORIES  # noqa: E402
from groundkit.reports.scoring import Label, Scores, union_side  # noqa: E402

SETS = {"development set": ROOT / "tests" / "data" / "report_dev", "check set": ROOT / "tests" / "data" / "report_check"}

TARGETS = {
    "Atelectasis": ["atelectasis", "atelectases", "atelectatic", "collapse"],
    "Cardiomegaly": ["cardiomegaly", "enlarged heart", "cardiac enlargement", "enlarged cardiac silhouette",
                     "enlargement of the cardiac silhouette"],
    "Consolidation": ["consolidation", "consolidations", "consolidative"],
    "Edema": ["edema", "oedema", "pulmonary edema", "interstitial edema"],
    "Lung Opacity": ["opacity", "opacities", "opacification", "opacifications", "infiltrate", "infiltrates"],
    "Pleural Effusion": ["effusion", "effusions", "pleural effusion", "pleural effusions", "pleural fluid"],
    "Pneumonia": ["pneumonia", "pneumonias", "bronchopneumonia"],
    "Pneumothorax": ["pneumothorax", "pneumothoraces", "pneumothoraxes"],
}
SIDE_WORDS = {"left": "left", "right": "right", "bilateral": "bilateral", "bilaterally": "bilateral",
              "bibasilar": "bilateral", "bibasal": "bilateral", "both": "bilateral"}
RANK = {"absent": 0, "uncertain": 1, "present": 2}


def build_nlp():
    import medspacy
    from loguru import logger

    logger.remove()  # PyRuSH logs every sentence at DEBUG level
    from medspacy.ner import TargetRule

    nlp = medspacy.load()
    matcher = nlp.get_pipe("medspacy_target_matcher")
    matcher.add([TargetRule(word, category) for category, words in TARGETS.items() for word in words])
    return nlp


def _side(ent) -> str | None:
    """The side word of the target's sentence nearest to it."""
    best, dist = None, None
    for tok in ent.sent:
        side = SIDE_WORDS.get(tok.lower_)
        if side is None:
            continue
        d = ent.start - tok.i if tok.i < ent.start else tok.i - ent.end + 1
        if dist is None or d < dist:
            best, dist = side, d
    return best


def labels(doc) -> dict[str, Label]:
    out: dict[str, Label] = {}
    sides: dict[str, list[str | None]] = {}
    for ent in doc.ents:
        if ent.label_ not in MSCXR_CATEGORIES:
            continue
        if ent._.is_negated:
            st = "absent"
        elif ent._.is_uncertain or ent._.is_hypothetical:
            st = "uncertain"
        else:
            st = "present"
        cur = out.get(ent.label_)
        if cur is None or RANK[st] > RANK[cur.status]:
            out[ent.label_] = Label(st)
        if st != "absent":
            sides.setdefault(ent.label_, []).append(_side(ent))
    for cat, lab in out.items():
        lab.side = union_side(sides.get(cat, [])) if lab.status != "absent" else None
    return out


def main() -> None:
    nlp = build_nlp()
    for title, folder in SETS.items():
        items = [json.loads(line) for p in sorted(folder.glob("*.jsonl")) for line in p.read_text().splitlines()
                 if line.strip()]
        scores = Scores()
        for it in items:
            scores.add(it["labels"], labels(nlp(it["text"])), it["id"])
        s = scores.summary()
        print(f"{title}: {len(items)} reports (medspaCy ConText baseline)")
        for k in ("presence_micro_f1", "presence_macro_f1", "firm_micro_f1", "negation_f1", "side_accuracy",
                  "side_accuracy_present"):
            print(f"  {k:22s} {s[k]:.3f}")
        print(f"  worst category F1: {min(s['per_category_f1'].values()):.3f}")
        print("  " + "  ".join(f"{c} {scores.category_f1(c):.3f}" for c in MSCXR_CATEGORIES) + "\n")


if __name__ == "__main__":
    main()
