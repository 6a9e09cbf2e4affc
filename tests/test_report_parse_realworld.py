"""Report parsing on real-world wording (issue 25): side and location grammar, negation scope, pseudo-negations
and resolution words, temporal status, hedges, word senses, indication text, section noise, user terms files,
and the development-set figures. Rules backend only."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from groundkit.reports import parse_report
from groundkit.reports.lexicon import LexiconError, load_lexicon
from groundkit.reports.scoring import report_labels, score

DEV = Path(__file__).parent / "data" / "report_dev"


def parse(text: str, **kw):
    return parse_report(text, use_spacy=False, **kw)


def find(text: str, category: str):
    """The single finding of ``category`` in ``text``."""
    fs = [f for f in parse(text).findings if f.category == category]
    assert len(fs) == 1, [(f.category, f.phrase) for f in parse(text).findings]
    return fs[0]


# ------------------------------------------------------------------------------------------------
# side and location
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text,category,side,location,phrase", [
    ("Atelectasis right base.", "Atelectasis", "right", ["base"], "Atelectasis right base"),
    ("Small effusion, left.", "Pleural Effusion", "left", [], "Small effusion, left"),
    ("Consolidation in the right lung base.", "Consolidation", "right", ["base"],
     "Consolidation in the right lung base"),
    ("Effusion at the left costophrenic angle.", "Pleural Effusion", "left", ["costophrenic angle"],
     "Effusion at the left costophrenic angle"),
    ("Opacity within the right hilum.", "Lung Opacity", "right", ["hilum"], "Opacity within the right hilum"),
    ("Opacity is seen in the right base.", "Lung Opacity", "right", ["base"], "Opacity in the right base"),
    ("At the left base, there is atelectasis.", "Atelectasis", "left", ["base"], "atelectasis at the left base"),
    ("Bilateral effusions, right greater than left.", "Pleural Effusion", "bilateral", [],
     "Bilateral effusions, right greater than left"),
    ("Effusions R > L.", "Pleural Effusion", "bilateral", [], "Effusions R > L"),
    ("Bibasilar atelectasis.", "Atelectasis", "bilateral", ["base"], "Bibasilar atelectasis"),
    ("Atelectasis at both bases.", "Atelectasis", "bilateral", ["base"], "Atelectasis at both bases"),
    ("Bibasal opacities.", "Lung Opacity", "bilateral", ["base"], "Bibasal opacities"),
    ("RUL pneumonia.", "Pneumonia", "right", ["upper lobe"], "RUL pneumonia"),
    ("RML consolidation.", "Consolidation", "right", ["middle lobe"], "RML consolidation"),
    ("LLL atelectasis.", "Atelectasis", "left", ["lower lobe"], "LLL atelectasis"),
    ("LUL opacity.", "Lung Opacity", "left", ["upper lobe"], "LUL opacity"),
    ("RLL infiltrate.", "Lung Opacity", "right", ["lower lobe"], "RLL infiltrate"),
    ("Lingular atelectasis.", "Atelectasis", "left", ["lingula"], "Lingular atelectasis"),
    ("Consolidation in the right middle lobe.", "Consolidation", "right", ["middle lobe"],
     "Consolidation in the right middle lobe"),
    ("Retrocardiac opacity.", "Lung Opacity", "left", ["retrocardiac"], "Retrocardiac opacity"),
    ("Opacification of the right hemithorax.", "Lung Opacity", "right", ["hemithorax"],
     "Opacification of the right hemithorax"),
    ("Small pleural effusions.", "Pleural Effusion", "bilateral", [], "Small pleural effusions"),
    ("Opacity in the middle and lower lobes.", "Lung Opacity", "right", ["middle lobe", "lower lobe"],
     "Opacity in the middle and lower lobes"),
    ("Small L PTX.", "Pneumothorax", "left", [], "Small L PTX"),
])
def test_side_and_location(text, category, side, location, phrase):
    f = find(text, category)
    assert (f.side, f.laterality, f.location, f.phrase) == (side, side, location, phrase)
    if side is not None:
        s, e = f.primary.side_span
        assert text[s:e].strip() and s < e


def test_each_finding_gets_its_own_side():
    rep = parse("Left pleural effusion and right lower lobe consolidation. Right pneumothorax, left effusion.")
    got = [(f.category, f.side) for f in rep.findings]
    assert got == [("Pleural Effusion", "left"), ("Consolidation", "right"), ("Pneumothorax", "right")]
    rep = parse("Right upper lobe opacity and left basilar atelectasis with small left effusion.")
    assert [(f.category, f.side) for f in rep.findings] == [
        ("Lung Opacity", "right"), ("Atelectasis", "left"), ("Pleural Effusion", "left")]


def test_diagnosis_takes_the_side_of_the_finding_it_explains():
    f = find("Left basilar opacity which could represent pneumonia.", "Pneumonia")
    assert (f.side, f.status, f.phrase) == ("left", "uncertain", "pneumonia, left base")
    f = find("Moderate left pleural effusion with adjacent atelectasis.", "Atelectasis")
    assert f.side == "left"


def test_side_and_location_in_to_dict():
    rep = parse("Opacity is seen in the right base.")
    d = json.loads(json.dumps(rep.to_dict()))["findings"][0]
    assert d["side"] == d["laterality"] == "right" and d["location"] == ["base"]
    assert d["phrase"] == "Opacity in the right base" and d["status"] == "present"
    assert d["mentions"][0]["side"] == "right" and d["mentions"][0]["phrase"] == "Opacity in the right base"
    assert {"temporal", "indication", "side_span", "location_spans"} <= set(d) & set(d["mentions"][0])


# ------------------------------------------------------------------------------------------------
# negation scope, pseudo-negations, resolution, temporal status
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text,expected", [
    ("No cardiomegaly with bilateral small pleural effusions.",
     {"Cardiomegaly": "absent", "Pleural Effusion": "present"}),
    ("No pneumothorax but small left effusion.", {"Pneumothorax": "absent", "Pleural Effusion": "present"}),
    ("No edema; left basilar atelectasis.", {"Edema": "absent", "Atelectasis": "present"}),
    ("No effusion, however there is right lower lobe consolidation.",
     {"Pleural Effusion": "absent", "Consolidation": "present"}),
    ("No pneumothorax, although a small effusion is present.",
     {"Pneumothorax": "absent", "Pleural Effusion": "present"}),
    ("No focal consolidation to suggest pneumonia.", {"Consolidation": "absent", "Pneumonia": "absent"}),
    ("No focal consolidation concerning for pneumonia.", {"Consolidation": "absent", "Pneumonia": "absent"}),
    ("No pneumothorax, pleural effusion, or focal consolidation.",
     {"Pneumothorax": "absent", "Pleural Effusion": "absent", "Consolidation": "absent"}),
    ("Heart size within normal limits.", {"Cardiomegaly": "absent"}),
    ("The heart is within limits of normal in size.", {"Cardiomegaly": "absent"}),
    ("No change in the small left pleural effusion.", {"Pleural Effusion": "present"}),
    ("No interval change in right lower lobe consolidation.", {"Consolidation": "present"}),
    ("Left effusion, not significantly changed.", {"Pleural Effusion": "present"}),
    ("Clearing of the right lower lobe consolidation.", {"Consolidation": "absent"}),
    ("The left effusion has resolved.", {"Pleural Effusion": "absent"}),
    ("Pneumothorax is no longer seen.", {"Pneumothorax": "absent"}),
    ("Improved right lower lobe opacity.", {"Lung Opacity": "present"}),
    ("Unchanged mild cardiomegaly.", {"Cardiomegaly": "present"}),
    ("Left basilar atelectasis is again seen.", {"Atelectasis": "present"}),
    ("Stable small right effusion.", {"Pleural Effusion": "present"}),
    ("Resolving left lower lobe pneumonia.", {"Pneumonia": "present"}),
])
def test_scope_and_status(text, expected):
    labels = report_labels(parse(text))
    assert {c: lab.status for c, lab in labels.items()} == expected


@pytest.mark.parametrize("text,category,temporal", [
    ("New left pleural effusion.", "Pleural Effusion", "new"),
    ("Unchanged mild cardiomegaly.", "Cardiomegaly", "chronic"),
    ("Left basilar atelectasis is again seen.", "Atelectasis", "chronic"),
    ("No change in the small left pleural effusion.", "Pleural Effusion", "chronic"),
    ("The left effusion has resolved.", "Pleural Effusion", "resolved"),
    ("Clearing of the right lower lobe consolidation.", "Consolidation", "resolved"),
    ("Right lower lobe consolidation.", "Consolidation", None),
])
def test_temporal_status(text, category, temporal):
    assert find(text, category).temporal == temporal


@pytest.mark.parametrize("text,category", [
    ("Findings may represent atelectasis.", "Atelectasis"),
    ("Pneumonia cannot be excluded.", "Pneumonia"),
    ("Opacity concerning for pneumonia.", "Pneumonia"),
    ("Question of a small pneumothorax.", "Pneumothorax"),
    ("Atelectasis versus pneumonia.", "Pneumonia"),
    ("Atelectasis versus pneumonia.", "Atelectasis"),
    ("Effusion or atelectasis at the left base.", "Atelectasis"),
    ("Scarring versus atelectasis in the right lower lobe.", "Atelectasis"),
    ("Differential includes pneumonia.", "Pneumonia"),
    ("LLL atelectasis/consolidation.", "Consolidation"),
    ("Borderline enlarged heart.", "Cardiomegaly"),
])
def test_hedges_are_uncertain(text, category):
    f = find(text, category)
    assert f.uncertain and not f.negated and f.status == "uncertain"


# ------------------------------------------------------------------------------------------------
# word senses
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text,category", [
    ("Small pericardial effusion.", "Pleural Effusion"),
    ("Sequelae of old granulomatous disease.", "Pneumonia"),
    ("Old granulomatous infection.", "Pneumonia"),
    ("Calcified granuloma in the right upper lobe.", "Pneumonia"),
    ("History of urinary tract infection.", "Pneumonia"),
    ("Rule out infection.", "Pneumonia"),
])
def test_senses_that_are_not_the_category(text, category):
    assert category not in report_labels(parse(text))


@pytest.mark.parametrize("text,category", [
    ("Enlarged cardiac silhouette.", "Cardiomegaly"),
    ("Enlarged cardiac contour.", "Cardiomegaly"),
    ("Heart size is mildly enlarged.", "Cardiomegaly"),
    ("Mild vascular congestion.", "Edema"),
    ("Congestive changes.", "Edema"),
    ("Interstitial edema.", "Edema"),
    ("Findings of CHF.", "Edema"),
    ("Fluid overload.", "Edema"),
    ("Blunting of the left costophrenic angle.", "Pleural Effusion"),
    ("Blunting of the right costophrenic recess.", "Pleural Effusion"),
    ("Atelectatic opacities at the left base.", "Atelectasis"),
    ("Atelectatic opacities at the left base.", "Lung Opacity"),
    ("Subsegmental atelectasis.", "Atelectasis"),
    ("Platelike atelectasis.", "Atelectasis"),
    ("Discoid atelectasis.", "Atelectasis"),
    ("Right lower lobe infection.", "Pneumonia"),
])
def test_senses_that_are_the_category(text, category):
    assert report_labels(parse(text))[category].status == "present"


def test_explained_blunting_is_no_effusion():
    labels = report_labels(parse("Blunting of the left costophrenic angle likely represents pleural scarring."))
    assert "Pleural Effusion" not in labels
    labels = report_labels(parse("Blunting of the right costophrenic angle may be due to small pleural effusion."))
    assert labels["Pleural Effusion"].status == "uncertain" and labels["Pleural Effusion"].side == "right"


# ------------------------------------------------------------------------------------------------
# indication text and section noise
# ------------------------------------------------------------------------------------------------
def test_indication_is_listed_not_a_finding():
    text = ("INDICATION: r/o pneumonia, evaluate for effusion.\nCOMPARISON: Chest radiograph XXXX.\n"
            "TECHNIQUE: PA and lateral.\nFINDINGS: No pleural effusion. Lungs are clear.\nIMPRESSION: No acute process.")
    rep = parse(text)
    assert [f.category for f in rep.indications] == ["Pneumonia", "Pleural Effusion"]
    assert all(f.indication for f in rep.indications)
    assert [f.category for f in rep.positive] == ["No Finding"]
    assert [f.category for f in rep.negated] == ["Pleural Effusion"]
    assert report_labels(rep)["Pleural Effusion"].status == "absent" and "Pneumonia" not in report_labels(rep)
    rep = parse("Evaluate for effusion.")
    assert rep.positive == [] and rep.findings[0].indication


def test_noise_headers_lists_masks_and_missing_periods():
    text = ("FINDINGS\nXXXX opacity in the right base\nNo pneumothorax\n1. Left effusion 2. No edema\n"
            "IMPRESSION\nMild cardiomegaly.No pleural effusion.Left lower lobe atelectasis.")
    rep = parse(text)
    assert list(rep.sections) == ["findings", "impression"]
    labels = {c: (lab.status, lab.side) for c, lab in report_labels(rep).items()}
    assert labels == {"Lung Opacity": ("present", "right"), "Pneumothorax": ("absent", None),
                      "Pleural Effusion": ("present", "left"), "Edema": ("absent", None),
                      "Cardiomegaly": ("present", None), "Atelectasis": ("present", "left")}


# ------------------------------------------------------------------------------------------------
# user terms files
# ------------------------------------------------------------------------------------------------
def test_terms_file_extends_and_env_var(tmp_path, monkeypatch):
    terms = tmp_path / "terms.yaml"
    terms.write_text("observations:\n  Pneumothorax:\n    - \"collapsed lung air\"\n"
                     "not_findings:\n  - \"vascular congestion\"\n")
    assert "Pneumothorax" not in report_labels(parse("Collapsed lung air on the left."))
    labels = report_labels(parse("Collapsed lung air on the left. Vascular congestion.", terms=terms))
    assert labels["Pneumothorax"].side == "left" and "Edema" not in labels
    monkeypatch.setenv("GROUNDKIT_REPORT_TERMS", str(terms))
    assert "Pneumothorax" in report_labels(parse("Collapsed lung air."))


def test_terms_file_replace(tmp_path):
    terms = tmp_path / "terms.json"
    terms.write_text(json.dumps({"replace": ["cues.uncertainty_pre"], "cues": {"uncertainty_pre": ["perhaps"]}}))
    assert report_labels(parse("Possible pneumonia.", terms=terms))["Pneumonia"].status == "present"
    assert report_labels(parse("Perhaps pneumonia.", terms=terms))["Pneumonia"].status == "uncertain"


@pytest.mark.parametrize("content,field", [
    ("observations:\n  Pneumothorax: 3\n", "observations.Pneumothorax"),
    ("observations:\n  Pneumothorax:\n    - 7\n", "observations.Pneumothorax[0]"),
    ("observations:\n  Edema:\n    - {pattern: edema, status: maybe}\n", "observations.Edema[0].status"),
    ("cues:\n  nonsense: [a]\n", "cues.nonsense"),
    ("places:\n  sides:\n    port: starboard\n", "places.sides"),
    ("colour: blue\n", "colour"),
    ("words:\n  modifiers: small\n", "words.modifiers"),
])
def test_terms_file_errors_name_file_and_field(tmp_path, content, field):
    terms = tmp_path / "bad.yaml"
    terms.write_text(content)
    with pytest.raises(LexiconError) as e:
        parse("No effusion.", terms=terms)
    assert str(terms) in str(e.value) and field in str(e.value)


def test_terms_file_rejects_anchors_aliases_and_bad_files(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("a: &a [x, x, x]\nb: &b [*a, *a, *a]\nc: [*b, *b, *b]\n")
    with pytest.raises(LexiconError, match="anchors and aliases"):
        load_lexicon(bomb)
    with pytest.raises(LexiconError, match="cannot read"):
        load_lexicon(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("observations: [unclosed\n")
    with pytest.raises(LexiconError, match="not valid YAML"):
        load_lexicon(broken)
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(LexiconError, match="mapping at the top level"):
        load_lexicon(listy)


# ------------------------------------------------------------------------------------------------
# development set
# ------------------------------------------------------------------------------------------------
def _dev_items() -> list[dict]:
    items = []
    for path in sorted(DEV.glob("*.jsonl")):
        items += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return items


def test_dev_set_figures():
    """Regression guard on the hand-labelled development set (the published targets are for held-out
    reports; these floors sit a little under what the parser scores here, see benchmarks/report_parser.py)."""
    items = _dev_items()
    if not items:
        pytest.skip("no development set")
    s = score(items, parse)
    summary = s.summary()
    print({k: round(v, 3) if isinstance(v, float) else v for k, v in summary.items() if k != "per_category_f1"})
    assert s.micro_f1 >= 0.95 and s.macro_f1 >= 0.93 and s.firm_f1 >= 0.93
    assert s.negation_f1 >= 0.97 and s.side_accuracy >= 0.88
    assert min(summary["per_category_f1"].values()) >= 0.85


# ------------------------------------------------------------------------------------------------
# wording classes found on the check set (tests/data/report_check), written as general rules; the
# sentences here are our own, not taken from either labelled set
# ------------------------------------------------------------------------------------------------
def labels_of(text: str, **kw) -> dict:
    return {c: (lab.status, lab.side) for c, lab in report_labels(parse(text, **kw)).items()}


@pytest.mark.parametrize("text,expected", [
    # 1. adjectives coordinated before one head; sides coordinated in one noun phrase are unioned
    ("There is no pleural or pericardial effusion.", {"Pleural Effusion": ("absent", None)}),
    ("Neither pleural nor pericardial fluid is seen.", {"Pleural Effusion": ("absent", None)}),
    ("Small pleural and pericardial effusions.", {"Pleural Effusion": ("present", None)}),
    ("No pericardial or pleural effusion.", {"Pleural Effusion": ("absent", None)}),
    ("Moderate left and small right pleural effusions.", {"Pleural Effusion": ("present", "bilateral")}),
    ("Trace right and small left effusions are stable.", {"Pleural Effusion": ("present", "bilateral")}),
    ("Right effusion and left lower lobe atelectasis.",
     {"Pleural Effusion": ("present", "right"), "Atelectasis": ("present", "left")}),
])
def test_coordinated_adjectives_and_sides(text, expected):
    assert labels_of(text) == expected


@pytest.mark.parametrize("text,expected", [
    # 2. edema, collapse and soft tissue outside the lungs
    ("Chest wall edema on the left.", {}),
    ("Pedal edema.", {}),
    ("Soft tissue edema along the right flank.", {}),
    ("Edema of the soft tissues of the left chest wall.", {}),
    ("Diffuse body wall edema. No pulmonary edema.", {"Edema": ("absent", None)}),
    ("Subcutaneous edema and mild pulmonary edema.", {"Edema": ("present", None)}),
    ("L1 vertebral body collapse.", {}),
    ("Compression deformity with partial collapse at T8.", {}),
    ("Right lower lobe collapse.", {"Atelectasis": ("present", "right")}),
    ("Soft tissue opacity in the anterior mediastinum, likely thymus.", {}),
    ("Mediastinal soft tissue density, likely lymph nodes.", {}),
    ("Soft tissue opacity in the right upper lobe.", {"Lung Opacity": ("present", "right")}),
])
def test_non_pulmonary_senses(text, expected):
    assert labels_of(text) == expected


@pytest.mark.parametrize("text,status", [
    # 3. heart size wording
    ("The cardiac silhouette is of normal size.", "absent"),
    ("Heart is of normal size and shape.", "absent"),
    ("Normal heart size.", "absent"),
    ("Heart size is within normal limits.", "absent"),
    ("The heart is not large.", "absent"),
    ("The heart is large.", "present"),
    ("Large heart with clear lungs.", "present"),
    ("The heart appears abnormally large.", "present"),
    ("The heart is enlarged.", "present"),
])
def test_heart_size_wording(text, status):
    assert report_labels(parse(text))["Cardiomegaly"].status == status


@pytest.mark.parametrize("text,side", [
    # 4. blunting
    ("Mild blunting of the costophrenic (CP) angles bilaterally.", "bilateral"),
    ("Blunting of the left costophrenic sulcus.", "left"),
    ("Blunted costophrenic angles.", "bilateral"),
    ("Blunt right costophrenic angle.", "right"),
    ("Slight blunting of both costophrenic angles.", "bilateral"),
    ("Minimal blunting of the right CP angle.", "right"),
    ("Blunting of the left costo-phrenic angle.", "left"),
])
def test_blunting_variants(text, side):
    assert labels_of(text) == {"Pleural Effusion": ("present", side)}


@pytest.mark.parametrize("text,expected", [
    # 5. structured "FIELD: VALUE" lines (the field name is no section header)
    ("PNEUMOTHORAX: NONE.\nPLEURAL EFFUSION: NONE\nHEART: ENLARGED",
     {"Pneumothorax": ("absent", None), "Pleural Effusion": ("absent", None), "Cardiomegaly": ("present", None)}),
    ("Consolidation: negative. Effusion: small right.",
     {"Consolidation": ("absent", None), "Pleural Effusion": ("present", "right")}),
    ("Pneumothorax: not seen. Heart size: normal.", {"Pneumothorax": ("absent", None), "Cardiomegaly": ("absent", None)}),
    ("Effusion: absent. Atelectasis: mild left basilar.",
     {"Pleural Effusion": ("absent", None), "Atelectasis": ("present", "left")}),
])
def test_structured_field_lines(text, expected):
    rep = parse(text)
    assert labels_of(text) == expected
    assert set(rep.sections) == {""}  # unknown field names do not open sections


@pytest.mark.parametrize("text,category", [
    # 6. common misspellings (lexicon data: words.spellings)
    ("Minimal left basilar atelecatsis.", "Atelectasis"),
    ("Small apical pneumothroax on the right.", "Pneumothorax"),
    ("Trace effusoin.", "Pleural Effusion"),
    ("Moderate cardiomegally.", "Cardiomegaly"),
    ("Patchy consolidaton.", "Consolidation"),
    ("Streaky opacites.", "Lung Opacity"),
    ("Aspiration pnuemonia.", "Pneumonia"),
    ("Interstitial edemea.", "Edema"),
    ("Subsegmental atelectesis.", "Atelectasis"),
])
def test_common_misspellings(text, category):
    assert report_labels(parse(text))[category].status == "present"


def test_misspellings_and_place_phrases_come_from_the_terms_file(tmp_path):
    terms = tmp_path / "terms.yaml"
    terms.write_text("words:\n  spellings:\n    pneumothorax: [pnemothorax]\n"
                     "places:\n  phrases:\n    - {pattern: \"under the left breast\", side: left, location: base}\n")
    assert "Pneumothorax" not in report_labels(parse("Small pnemothorax."))
    assert labels_of("Small pnemothorax.", terms=terms) == {"Pneumothorax": ("present", None)}
    assert labels_of("Opacity under the left breast.", terms=terms) == {"Lung Opacity": ("present", "left")}
    bad = tmp_path / "bad.yaml"
    bad.write_text("words:\n  spellings:\n    pneumothorax: pnemothorax\n")
    with pytest.raises(LexiconError, match="words.spellings"):
        parse("No effusion.", terms=bad)


@pytest.mark.parametrize("text,category,side", [
    # 7. a hedged diagnosis after a located finding takes its side
    ("Right perihilar opacity, cannot exclude early pneumonia.", "Pneumonia", "right"),
    ("Patchy right basilar opacities, left greater than right, suspicious for infection.", "Pneumonia", "bilateral"),
    ("Right lower lobe opacity, ? pneumonia.", "Pneumonia", "right"),
    ("Left basilar opacity, query consolidation.", "Consolidation", "left"),
    ("Right upper lobe opacity, early pneumonia versus atelectasis.", "Pneumonia", "right"),
    ("Right upper lobe opacity, early pneumonia versus atelectasis.", "Atelectasis", "right"),
    ("New left base opacity, differential includes aspiration pneumonia.", "Pneumonia", "left"),
])
def test_hedged_diagnosis_takes_the_side(text, category, side):
    f = find(text, category)
    assert (f.status, f.side) == ("uncertain", side)


@pytest.mark.parametrize("text,category", [
    # 8. uncertainty phrasings
    ("Question whether there is a small effusion.", "Pleural Effusion"),
    ("The possibility of early pneumonia is raised.", "Pneumonia"),
    ("? small left pneumothorax.", "Pneumothorax"),
    ("Patchy right basal opacity, query consolidation.", "Consolidation"),
])
def test_uncertainty_phrasings(text, category):
    assert find(text, category).status == "uncertain"


def test_a_clinical_question_is_neither_present_nor_scored():
    rep = parse("The ward wonders whether there is a right pneumothorax after line insertion.")
    f = find("The ward wonders whether there is a right pneumothorax after line insertion.", "Pneumothorax")
    assert f.status == "uncertain" and f.indication and rep.positive == []
    # a question mark before a finding does not end the sentence; one after a sentence still does
    assert len(parse("Right basal opacity, ? aspiration.").sentences) == 1
    assert len(parse("Is this new? No effusion.").sentences) == 2


@pytest.mark.parametrize("text,category,side,location", [
    # 9. side and location from a phrase inside the sentence
    ("Dense opacification of the right hemi-thorax.", "Lung Opacity", "right", ["hemithorax"]),
    ("Patchy consolidation (right middle lobe pneumonia).", "Consolidation", "right", ["middle lobe"]),
    ("Wedge-shaped opacity behind the heart.", "Lung Opacity", "left", ["retrocardiac"]),
    ("Atelectasis is seen behind the heart.", "Atelectasis", "left", ["retrocardiac"]),
])
def test_side_from_a_place_phrase(text, category, side, location):
    f = find(text, category)
    assert (f.side, f.location) == (side, location)
