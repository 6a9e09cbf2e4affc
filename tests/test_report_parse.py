"""Report parsing (groundkit.reports): sections, sentences, noun-phrase mentions with exact spans, negation
and uncertainty scopes, de-duplication across sections, vocabulary coverage, and extraction accuracy on
synthetic reports with ground-truth spans. Pure Python; spaCy only in the one test that checks its path."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from groundkit.reports import Finding, ParsedReport, parse_report, synthetic_report
from groundkit.reports import parse as P
from groundkit.reports.lexicon import CHEXPERT_OBSERVATIONS, MSCXR_CATEGORIES
from groundkit.reports.synthetic import sample_findings


def parse(text: str) -> ParsedReport:
    """The rule-based path (spaCy off) is what every test but the spaCy one checks."""
    return parse_report(text, use_spacy=False)


def only(text: str):
    """The single mention of a one-finding sentence."""
    ms = parse(text).mentions
    assert len(ms) == 1, [m.text for m in ms]
    return ms[0]


def by_text(report: ParsedReport) -> dict[str, object]:
    return {m.text: m for m in report.mentions}


# ----------------------------------------------------------------------------------------------
# sections and sentences
# ----------------------------------------------------------------------------------------------
REPORT = (
    "EXAMINATION: Chest PA and lateral.\n"
    "INDICATION: Cough.\n\n"
    "FINDINGS: Small left apical pneumothorax. No pleural effusion, consolidation, or edema. "
    "The heart size is normal.\n\n"
    "IMPRESSION: Small left pneumothorax."
)


def test_sections_findings_impression_and_others():
    rep = parse(REPORT)
    t = REPORT
    assert list(rep.sections) == ["examination", "indication", "findings", "impression"]
    s, e = rep.sections["findings"]
    assert t[s:e] == ("Small left apical pneumothorax. No pleural effusion, consolidation, or edema. "
                      "The heart size is normal.")
    s, e = rep.sections["impression"]
    assert t[s:e] == "Small left pneumothorax."
    assert {m.section for m in rep.mentions} == {"findings", "impression"}


@pytest.mark.parametrize("findings_head,impression_head,name", [
    ("FINDINGS:", "IMPRESSION:", "impression"),
    ("Findings:", "Impression:", "impression"),
    ("findings:", "Conclusion:", "conclusion"),
])
def test_section_headers_case_insensitive(findings_head, impression_head, name):
    text = f"{findings_head} Left effusion. {impression_head} Effusion on the left."
    rep = parse(text)
    assert list(rep.sections) == ["findings", name]
    assert text[slice(*rep.sections["findings"])] == "Left effusion."
    assert text[slice(*rep.sections[name])] == "Effusion on the left."


def test_text_without_sections_is_one_unnamed_section():
    text = "  Small right pleural effusion. No pneumothorax.  "
    rep = parse(text)
    assert rep.sections == {"": (2, 48)}
    assert {m.section for m in rep.mentions} == {""}


def test_text_before_first_header_is_unnamed_section():
    text = "Portable chest.\nFINDINGS: Left effusion."
    rep = parse(text)
    assert list(rep.sections) == ["", "findings"]
    assert text[slice(*rep.sections[""])] == "Portable chest."


def test_sentence_split_decimals_abbreviations_and_lists():
    text = ("FINDINGS: A 2.5 cm nodule in the right upper lobe, approx. 3 cm from the hilum. Is there a "
            "pneumothorax? No! Dr. Smith was called at 3 p.m. today.\n"
            "IMPRESSION:\n1. Right upper lobe nodule.\n2. No pneumothorax. 3. Small left effusion\n- Possible pneumonia.")
    rep = parse(text)
    assert [text[s:e] for s, e in rep.sentences] == [
        "A 2.5 cm nodule in the right upper lobe, approx. 3 cm from the hilum.",
        "Is there a pneumothorax?",
        "No!",
        "Dr. Smith was called at 3 p.m. today.",
        "Right upper lobe nodule.",
        "No pneumothorax.",
        "Small left effusion",
        "Possible pneumonia.",
    ]


def test_sentences_do_not_split_on_wrapped_lines():
    text = "There is a small left\npleural effusion. No pneumothorax."
    rep = parse(text)
    assert [text[s:e] for s, e in rep.sentences] == ["There is a small left\npleural effusion.", "No pneumothorax."]
    assert rep.mentions[0].text == "small left\npleural effusion"


# ----------------------------------------------------------------------------------------------
# spans and noun phrases
# ----------------------------------------------------------------------------------------------
def test_spans_index_the_original_text():
    rep = parse(REPORT)
    assert len(rep.mentions) == 6  # "The heart size is normal" is now a negated Cardiomegaly (issue 25)
    for m in rep.mentions:
        assert REPORT[m.start:m.end] == m.text
        assert REPORT[slice(*m.sentence_span)] == m.sentence
        assert m.sentence_span[0] <= m.start < m.end <= m.sentence_span[1]
        assert m.core[0] >= m.start and m.core[1] <= m.end
    assert [m.text for m in rep.mentions] == [
        "Small left apical pneumothorax", "pleural effusion", "consolidation", "edema", "heart size is normal",
        "Small left pneumothorax"]


@pytest.mark.parametrize("sentence,phrase,category,laterality,zones,modifiers", [
    ("There is a small left apical pneumothorax.", "small left apical pneumothorax", "Pneumothorax", "left",
     ["apical"], ["small"]),
    ("Patchy consolidation of the right lung base is noted.", "Patchy consolidation of the right lung base",
     "Consolidation", "right", ["base"], ["patchy"]),
    ("Moderate bilateral pleural effusions.", "Moderate bilateral pleural effusions", "Pleural Effusion",
     "bilateral", [], ["moderate"]),
    ("Findings consistent with small pleural effusion on the right.", "small pleural effusion on the right",
     "Pleural Effusion", "right", [], ["small"]),
    ("Hazy opacity projecting over the left base.", "Hazy opacity projecting over the left base", "Lung Opacity",
     "left", ["base"], ["hazy"]),
    ("Focal consolidation in the upper zone of the left lung.", "Focal consolidation in the upper zone of the left lung",
     "Consolidation", "left", ["upper"], ["focal"]),
    ("Small to moderate left and right pleural effusions.", "Small to moderate left and right pleural effusions",
     "Pleural Effusion", "bilateral", [], ["small", "moderate"]),
    ("Left-sided plate-like atelectasis.", "Left-sided plate-like atelectasis", "Atelectasis", "left", [],
     ["plate-like"]),
    ("Mild bibasilar atelectasis.", "Mild bibasilar atelectasis", "Atelectasis", "bilateral", ["bibasilar"], ["mild"]),
    ("Opacities bilaterally.", "Opacities bilaterally", "Lung Opacity", "bilateral", [], []),
    # retrocardiac = behind the heart = left lower lobe region (issue 25: it carries the left side)
    ("Retrocardiac opacification.", "Retrocardiac opacification", "Lung Opacity", "left", ["retrocardiac"], []),
    # plural "lungs" without a side word = both lungs (issue 25)
    ("Opacity in the mid and lower lungs.", "Opacity in the mid and lower lungs", "Lung Opacity", "bilateral",
     ["mid", "lower"], []),
    ("Mild perihilar interstitial edema.", "Mild perihilar interstitial edema", "Edema", None, ["perihilar"], ["mild"]),
    ("Right lower lobe collapse.", "Right lower lobe collapse", "Atelectasis", "right", ["lower"], []),
    ("The heart size is mildly enlarged.", "heart size is mildly enlarged", "Cardiomegaly", None, [], ["mildly"]),
    ("Left 7th rib fracture.", "Left 7th rib fracture", "Fracture", "left", [], ["rib"]),
])
def test_noun_phrase_with_modifiers(sentence, phrase, category, laterality, zones, modifiers):
    m = only(sentence)
    assert (m.text, m.category, m.laterality, m.zones, m.modifiers) == (phrase, category, laterality, zones, modifiers)
    assert sentence[m.start:m.end] == phrase
    assert not m.negated and not m.uncertain


def test_noun_phrases_do_not_swallow_neighbours():
    rep = parse("Small left effusion at the left base and left lower lobe atelectasis.")
    assert [m.text for m in rep.mentions] == ["Small left effusion at the left base", "left lower lobe atelectasis"]
    rep = parse("Right upper lobe opacity and left basilar atelectasis with small left effusion.")
    assert [m.text for m in rep.mentions] == ["Right upper lobe opacity", "left basilar atelectasis",
                                              "small left effusion"]


# ----------------------------------------------------------------------------------------------
# negation and uncertainty
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sentence,cue", [
    # pre-negation
    ("No pneumothorax.", "No"),
    ("The chest is without pneumothorax.", "without"),
    ("The lungs are free of consolidation.", "free of"),
    ("Negative for pneumothorax.", "Negative for"),
    ("No evidence of pneumothorax.", "No evidence of"),
    ("Absence of pleural effusion.", "Absence of"),
    ("Resolved left pneumothorax.", "Resolved"),
    ("Interval resolution of the left effusion.", "Interval resolution of"),
    ("The lungs are clear of consolidation.", "clear of"),
    ("Not seen is a pneumothorax.", "Not seen"),
    ("No new consolidation.", "No new"),
    ("There is no longer a pneumothorax.", "no longer"),
    ("No definite pneumothorax.", "No definite"),
    # post-negation
    ("Pneumothorax is not seen.", "is not seen"),
    ("Pneumothorax not seen.", "not seen"),
    ("The left effusion has resolved.", "has resolved"),
    ("Pleural effusions are absent.", "are absent"),
    ("Pneumothorax is excluded.", "is excluded"),
    ("Pneumothorax is no longer seen.", "is no longer seen"),
])
def test_negation_cues(sentence, cue):
    m = only(sentence)
    assert m.negated and not m.uncertain
    assert m.negation_cue == cue and m.uncertainty_cue is None


@pytest.mark.parametrize("sentence,cue,target", [
    ("Findings may represent atelectasis.", "may represent", "atelectasis"),
    ("Possible right lower lobe pneumonia.", "Possible", "right lower lobe pneumonia"),
    ("Possibly atelectasis.", "Possibly", "atelectasis"),
    ("Probable pulmonary edema.", "Probable", "pulmonary edema"),
    ("Pneumonia cannot be excluded.", "cannot be excluded", "Pneumonia"),
    ("Pneumonia is not excluded.", "is not excluded", "Pneumonia"),
    # "infection" is pneumonia only where the lungs are named (issue 25)
    ("Right lower lobe infection not excluded.", "not excluded", "Right lower lobe infection"),
    ("The opacity could represent pneumonia.", "could represent", "pneumonia"),
    ("Questionable small pneumothorax.", "Questionable", "small pneumothorax"),
    ("The opacity is suspicious for pneumonia.", "suspicious for", "pneumonia"),
    ("The opacity is concerning for pneumonia.", "concerning for", "pneumonia"),
    ("Left basilar opacity, likely atelectasis.", "likely", "atelectasis"),
    ("Atelectasis versus pneumonia.", "versus", "pneumonia"),
    ("Atelectasis versus pneumonia.", "versus", "Atelectasis"),
    ("Differential includes pneumonia.", "Differential includes", "pneumonia"),
    ("Rule out pneumonia.", "Rule out", "pneumonia"),
    ("Cough, eval for pneumonia.", "eval for", "pneumonia"),
    ("Cannot exclude a small pneumothorax.", "Cannot exclude", "small pneumothorax"),
])
def test_uncertainty_cues(sentence, cue, target):
    m = by_text(parse(sentence))[target]
    assert m.uncertain and not m.negated
    assert m.uncertainty_cue == cue and m.negation_cue is None


def test_uncertainty_targets_only_what_follows_a_pre_cue():
    ms = by_text(parse("The opacity is concerning for pneumonia."))
    assert not ms["opacity"].uncertain and ms["pneumonia"].uncertain
    ms = by_text(parse("Left basilar opacity, likely atelectasis, although pneumonia cannot be excluded."))
    assert (ms["Left basilar opacity"].uncertain, ms["atelectasis"].uncertain, ms["pneumonia"].uncertain) == (False, True, True)


def test_list_negation():
    rep = parse("No pneumothorax, pleural effusion, or consolidation.")
    assert [(m.text, m.negated, m.negation_cue) for m in rep.mentions] == [
        ("pneumothorax", True, "No"), ("pleural effusion", True, "No"), ("consolidation", True, "No")]
    rep = parse("Pneumothorax, effusion, and consolidation are not seen.")
    assert all(m.negated and m.negation_cue == "are not seen" for m in rep.mentions) and len(rep.mentions) == 3


def test_post_negation_does_not_cross_a_clause_comma():
    ms = by_text(parse("Effusion present, pneumothorax not seen."))
    assert not ms["Effusion"].negated and ms["pneumothorax"].negated


@pytest.mark.parametrize("sentence", [
    "No effusion but there is a small left pneumothorax.",
    "No effusion; small left pneumothorax.",
    "No effusion, however there is a small left pneumothorax.",
    "No effusion, although a small left pneumothorax is present.",
    "No effusion except for a small left pneumothorax.",
    "No effusion aside from a small left pneumothorax.",
    "No effusion, which was seen before, and a small left pneumothorax.",
    "No effusion is seen and the small left pneumothorax persists.",
])
def test_scope_terminators(sentence):
    ms = by_text(parse(sentence))
    assert ms["effusion"].negated
    assert not ms["small left pneumothorax"].negated and not ms["small left pneumothorax"].uncertain


def test_negation_does_not_reach_across_sentences():
    rep = parse("No effusion. Small left pneumothorax.")
    assert [m.negated for m in rep.mentions] == [True, False]


def test_positive_before_a_pre_cue_is_not_negated():
    ms = by_text(parse("Small left effusion without pneumothorax."))
    assert not ms["Small left effusion"].negated and ms["pneumothorax"].negated


def test_nearest_cue_wins():
    ms = by_text(parse("No effusion, possible small right pneumothorax."))
    assert ms["effusion"].negated
    assert ms["small right pneumothorax"].uncertain and not ms["small right pneumothorax"].negated


@pytest.mark.parametrize("sentence,phrase", [
    ("No change in the small left pleural effusion.", "small left pleural effusion"),
    ("No interval change in right lower lobe consolidation.", "right lower lobe consolidation"),
    ("No significant change in mild pulmonary edema.", "mild pulmonary edema"),
])
def test_pseudo_negations_do_not_negate(sentence, phrase):
    m = only(sentence)
    assert m.text == phrase and not m.negated


def test_negation_inside_the_observation_phrase():
    m = only("The heart is not enlarged.")
    assert (m.observation, m.negated, m.negation_cue) == ("Cardiomegaly", True, "not")
    m = only("The cardiomediastinal silhouette is enlarged.")
    assert (m.observation, m.negated) == ("Enlarged Cardiomediastinum", False)
    # statements of normality are negated findings (issue 25), not nothing
    rep = parse("The cardiomediastinal silhouette is within normal limits. Heart size is normal.")
    assert [(f.observation, f.negated, [m.negation_cue for m in f.mentions]) for f in rep.findings] == [
        ("Cardiomegaly", True, ["within normal limits", "normal"])]


def test_no_finding_statement_is_positive():
    m = only("No acute cardiopulmonary process.")
    assert (m.observation, m.category, m.negated) == ("No Finding", "No Finding", False)


# ----------------------------------------------------------------------------------------------
# de-duplication
# ----------------------------------------------------------------------------------------------
def test_dedup_across_findings_and_impression():
    text = ("FINDINGS: Small left apical pneumothorax. No pleural effusion. Patchy right lower lobe opacity.\n"
            "IMPRESSION: 1. Left pneumothorax. 2. No effusion. 3. Right lower lobe opacity, possibly pneumonia.")
    rep = parse(text)
    assert [(f.category, f.phrase, len(f.mentions), f.negated) for f in rep.findings] == [
        ("Pneumothorax", "Small left apical pneumothorax", 2, False),
        ("Pleural Effusion", "pleural effusion", 2, True),
        ("Lung Opacity", "Patchy right lower lobe opacity", 2, False),
        # the diagnosis takes the side of the finding it explains (issue 25): grounded with it
        ("Pneumonia", "pneumonia, right lower lobe", 1, False),
    ]
    ptx = rep.findings[0]
    assert isinstance(ptx, Finding)
    assert ptx.primary.section == "findings" and [m.section for m in ptx.mentions] == ["findings", "impression"]
    assert [m.text for m in ptx.mentions] == ["Small left apical pneumothorax", "Left pneumothorax"]
    assert (ptx.laterality, ptx.zones) == ("left", ["apical"])
    assert [f.phrase for f in rep.positive] == ["Small left apical pneumothorax", "Patchy right lower lobe opacity",
                                                "pneumonia, right lower lobe"]
    assert [f.phrase for f in rep.negated] == ["pleural effusion"]
    assert rep.findings[3].uncertain and not rep.findings[2].uncertain


def test_primary_is_the_findings_mention_even_if_impression_comes_first():
    text = "IMPRESSION: Left effusion.\nFINDINGS: Moderate left pleural effusion."
    f = parse(text).findings
    assert len(f) == 1 and f[0].phrase == "Moderate left pleural effusion"


def test_dedup_keeps_distinct_findings_apart():
    rep = parse("FINDINGS: Right upper lobe opacity. Right lower lobe opacity. Left effusion. No right effusion. "
                "Pacemaker in place. Right central line. ET tube in place. Nasogastric tube in the stomach.\n"
                "IMPRESSION: Right effusion is not seen. Pacemaker leads are unchanged.")
    assert [(f.phrase, len(f.mentions)) for f in rep.findings] == [
        ("Right upper lobe opacity", 1), ("Right lower lobe opacity", 1), ("Left effusion", 1),
        ("right effusion", 2), ("Pacemaker", 2), ("Right central line", 1), ("ET tube", 1), ("Nasogastric tube", 1)]


def test_unlateralised_mention_joins_the_lateralised_one_in_its_sentence():
    rep = parse("Blunting of the left costophrenic angle from effusion. Right effusion.")
    assert [(f.phrase, len(f.mentions), f.laterality) for f in rep.findings] == [
        ("Blunting of the left costophrenic angle", 2, "left"), ("Right effusion", 1, "right")]


def test_to_dict_is_json_ready():
    rep = parse(REPORT)
    d = json.loads(json.dumps(rep.to_dict()))
    assert d["text"] == REPORT and d["sentence_backend"] == "rules"
    assert d["sections"]["impression"] == list(rep.sections["impression"])
    f0 = d["findings"][0]
    assert f0["phrase"] == "Small left apical pneumothorax" and f0["category"] == "Pneumothorax"
    assert [m["text"] for m in f0["mentions"]] == ["Small left apical pneumothorax", "Small left pneumothorax"]
    assert f0["mentions"][0]["start"] == REPORT.index("Small left apical")


# ----------------------------------------------------------------------------------------------
# vocabulary coverage
# ----------------------------------------------------------------------------------------------
MSCXR_EXAMPLES = {
    "Atelectasis": "Left basilar atelectasis.",
    "Cardiomegaly": "Moderate cardiomegaly.",
    "Consolidation": "Right lower lobe consolidation.",
    "Edema": "Mild pulmonary edema.",
    "Lung Opacity": "Left upper lobe opacity.",
    "Pleural Effusion": "Small right pleural effusion.",
    "Pneumonia": "Right middle lobe pneumonia.",
    "Pneumothorax": "Small left pneumothorax.",
}


@pytest.mark.parametrize("category", MSCXR_CATEGORIES)
def test_all_mscxr_categories(category):
    m = only(MSCXR_EXAMPLES[category])
    assert m.category == category and m.observation == category


CHEXPERT_EXAMPLES = {
    "No Finding": "No acute cardiopulmonary process.",
    "Enlarged Cardiomediastinum": "Widened mediastinum.",
    "Cardiomegaly": "Enlarged cardiac silhouette.",
    "Lung Lesion": "Right upper lobe nodule.",
    "Lung Opacity": "Bibasilar opacities.",
    "Edema": "Interstitial edema.",
    "Consolidation": "Dense consolidation.",
    "Pneumonia": "Multifocal pneumonia.",
    "Atelectasis": "Subsegmental atelectasis.",
    "Pneumothorax": "Tiny apical pneumothorax.",
    "Pleural Effusion": "Layering effusions.",
    "Pleural Other": "Right apical pleural thickening.",
    "Fracture": "Healing left rib fracture.",
    "Support Devices": "Dual-lead pacemaker.",
}


@pytest.mark.parametrize("observation", CHEXPERT_OBSERVATIONS)
def test_all_chexpert_observations(observation):
    m = only(CHEXPERT_EXAMPLES[observation])
    assert m.observation == observation
    assert m.category == observation  # the 8 shared labels map onto themselves, the others keep their name


@pytest.mark.parametrize("sentence,observation,core", [
    ("Bilateral effusions.", "Pleural Effusion", "effusions"),
    ("Small amount of pleural fluid.", "Pleural Effusion", "pleural fluid"),
    ("Atelectatic changes at the left base.", "Atelectasis", "Atelectatic changes"),
    ("Left lower lobe collapse.", "Atelectasis", "collapse"),
    ("Patchy opacities.", "Lung Opacity", "opacities"),
    ("Opacification of the left hemithorax.", "Lung Opacity", "Opacification"),
    ("Right basilar airspace disease.", "Lung Opacity", "airspace disease"),
    ("Left lower lobe infiltrate.", "Lung Opacity", "infiltrate"),
    ("Enlarged cardiac silhouette.", "Cardiomegaly", "Enlarged cardiac silhouette"),
    ("Heart size is enlarged.", "Cardiomegaly", "Heart size is enlarged"),
    ("Mild vascular congestion.", "Edema", "vascular congestion"),
    ("Pulmonary edema.", "Edema", "Pulmonary edema"),
    ("Interstitial edema.", "Edema", "Interstitial edema"),
    ("Small left PTX.", "Pneumothorax", "PTX"),
    ("Right upper lobe nodule.", "Lung Lesion", "nodule"),
    ("Left hilar mass.", "Lung Lesion", "mass"),
    ("Left rib fracture.", "Fracture", "fracture"),
    ("Pacemaker leads are in place.", "Support Devices", "Pacemaker leads"),
    ("The endotracheal tube ends 4 cm above the carina.", "Support Devices", "endotracheal tube"),
    ("Right IJ central line.", "Support Devices", "central line"),
    ("Left pleural thickening.", "Pleural Other", "pleural thickening"),
])
def test_synonyms_and_inflections(sentence, observation, core):
    m = only(sentence)
    assert m.observation == observation
    assert sentence[slice(*m.core)] == core


# ----------------------------------------------------------------------------------------------
# spaCy (optional) and import hygiene
# ----------------------------------------------------------------------------------------------
def test_spacy_sentence_path():
    pytest.importorskip("spacy")
    if not P.spacy_available():
        pytest.skip("no spaCy English pipeline installed")
    text = ("FINDINGS: Small left apical pneumothorax measuring approx. 2.5 cm. No effusion but there is "
            "left basilar atelectasis.\nIMPRESSION: Left pneumothorax.")
    sp, rules = parse_report(text, use_spacy=True), parse(text)
    assert sp.sentence_backend.startswith("spacy:") and rules.sentence_backend == "rules"
    assert [text[s:e] for s, e in sp.sentences] == [text[s:e] for s, e in rules.sentences] == [
        "Small left apical pneumothorax measuring approx. 2.5 cm.",
        "No effusion but there is left basilar atelectasis.",
        "Left pneumothorax.",
    ]
    assert [f.to_dict() for f in sp.findings] == [f.to_dict() for f in rules.findings]


def test_use_spacy_true_without_pipeline_raises(monkeypatch):
    monkeypatch.setattr(P, "spacy_available", lambda: False)
    with pytest.raises(RuntimeError, match="spaCy"):
        parse_report("No pneumothorax.", use_spacy=True)
    assert parse_report("No pneumothorax.", use_spacy=None).sentence_backend == "rules"


def test_package_imports_and_parses_without_spacy():
    code = ("import sys; sys.modules['spacy'] = None\n"
            "from groundkit.reports import parse_report\n"
            "r = parse_report('FINDINGS: No pneumothorax. Small left effusion.')\n"
            "assert r.sentence_backend == 'rules', r.sentence_backend\n"
            "assert [(f.phrase, f.negated) for f in r.findings] == [('pneumothorax', True), ('Small left effusion', False)]\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


# ----------------------------------------------------------------------------------------------
# synthetic reports with ground truth
# ----------------------------------------------------------------------------------------------
def test_synthetic_report_ground_truth_is_exact():
    rng = np.random.default_rng(7)
    findings = [
        {"category": "Pleural Effusion", "phrase": "small left pleural effusion", "boxes": [[10, 20, 30, 40]]},
        {"category": "Atelectasis", "phrase": "right basilar atelectasis", "boxes": [[50, 60, 20, 10]]},
    ]
    for _ in range(20):
        rep = synthetic_report(rng, findings)
        text = rep["text"]
        assert "FINDINGS:" in text.upper() and ("IMPRESSION:" in text.upper() or "CONCLUSION:" in text.upper())
        idx = {m["finding_index"] for m in rep["mentions"] if not m["negated"]}
        assert idx >= {0, 1}
        for m in rep["mentions"]:
            span = text[m["start"]:m["end"]]
            assert span and span == span.strip()
            assert m["category"] in MSCXR_CATEGORIES
            if m["negated"]:
                assert m["boxes"] == [] and m["finding_index"] is None
                assert m["category"] not in {"Pleural Effusion", "Atelectasis"}
            else:
                assert m["boxes"] == findings[m["finding_index"]]["boxes"]
        first = [m for m in rep["mentions"] if m["finding_index"] == 0][0]
        assert text[first["start"]:first["end"]].lower() == "small left pleural effusion"
        assert 1 <= sum(m["negated"] for m in rep["mentions"]) <= 3


def test_synthetic_report_is_deterministic():
    a = synthetic_report(np.random.default_rng(3), sample_findings(np.random.default_rng(4)))
    b = synthetic_report(np.random.default_rng(3), sample_findings(np.random.default_rng(4)))
    assert a == b


def _match(pred, gt) -> bool:
    """A predicted mention matches a ground-truth one when the spans overlap and the categories agree
    (the parser's noun phrase may be wider or narrower than the generator's phrase)."""
    return pred.category == gt["category"] and pred.start < gt["end"] and gt["start"] < pred.end


def synthetic_scores(n: int = 200, seed: int = 0) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    n_gt = n_pred = hit_gt = hit_pred = neg_ok = 0
    for _ in range(n):
        rep = synthetic_report(rng, sample_findings(rng))
        preds = parse(rep["text"]).mentions
        n_gt += len(rep["mentions"])
        n_pred += len(preds)
        hit_pred += sum(any(_match(p, g) for g in rep["mentions"]) for p in preds)
        for g in rep["mentions"]:
            hits = [p for p in preds if _match(p, g)]
            if hits:
                hit_gt += 1
                neg_ok += hits[0].negated == g["negated"]
    return {"recall": hit_gt / n_gt, "precision": hit_pred / n_pred, "negation_accuracy": neg_ok / max(hit_gt, 1),
            "n_gt": n_gt, "n_pred": n_pred}


def test_synthetic_extraction_accuracy():
    s = synthetic_scores(200, seed=0)
    print("synthetic report extraction:", s)
    assert s["n_gt"] >= 600
    assert s["recall"] >= 0.95
    assert s["precision"] >= 0.95
    assert s["negation_accuracy"] >= 0.95
