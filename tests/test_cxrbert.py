"""groundkit.families.text.cxrbert: CXR-BERT-specialized / plain BERT without remote code."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from builders import build_cxrbert_folder, build_plain_bert_folder, cxrbert_state_dict, wordpiece_vocab
from safetensors.torch import save_file

from groundkit.core.safeload import CheckpointMismatchError
from groundkit.families.text.cxrbert import CXRBertModel, build_bert_config, load_cxrbert, load_wordpiece_tokenizer

transformers = pytest.importorskip("transformers")

PUBLISHED_NON_ENCODER_KEYS = {
    "bert.embeddings.position_ids",
    "bert.embeddings.word_embeddings.weight",
    "bert.embeddings.position_embeddings.weight",
    "bert.embeddings.token_type_embeddings.weight",
    "bert.embeddings.LayerNorm.weight",
    "bert.embeddings.LayerNorm.bias",
    "cls.predictions.bias",
    "cls.predictions.transform.dense.weight",
    "cls.predictions.transform.dense.bias",
    "cls.predictions.transform.LayerNorm.weight",
    "cls.predictions.transform.LayerNorm.bias",
    "cls.predictions.decoder.weight",
    "cls.predictions.decoder.bias",
    "cls_projection_head.dense_to_hidden.weight",
    "cls_projection_head.dense_to_hidden.bias",
    "cls_projection_head.LayerNorm.weight",
    "cls_projection_head.LayerNorm.bias",
    "cls_projection_head.dense_to_output.weight",
    "cls_projection_head.dense_to_output.bias",
}
PHRASES = ["Small left apical pneumothorax", "big right-sided pleural effusion"]


@pytest.fixture(scope="module")
def cxr_folder(tmp_path_factory) -> Path:
    return build_cxrbert_folder(tmp_path_factory.mktemp("cxrbert") / "BiomedVLP-CXR-BERT-specialized")


@pytest.fixture(autouse=True)
def no_remote_code(monkeypatch):
    """Any attempt to go through transformers' Auto*/remote-code machinery fails the test."""

    def boom(*a, **k):
        raise AssertionError("transformers Auto*/remote code must not be used")

    import transformers.dynamic_module_utils as dmu

    monkeypatch.setattr(dmu, "get_class_from_dynamic_module", boom)
    for name in ("AutoModel", "AutoConfig", "AutoTokenizer", "AutoModelForMaskedLM"):
        monkeypatch.setattr(getattr(transformers, name), "from_pretrained", boom)


def _reference(folder: Path):
    """transformers' own BertModel with the same weights (the bert.* part of the file)."""
    cfg = json.loads((folder / "config.json").read_text())
    ref = transformers.BertModel(build_bert_config(cfg), add_pooling_layer=False).eval()
    sd = torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    res = ref.load_state_dict({k[5:]: v for k, v in sd.items() if k.startswith("bert.")}, strict=False)
    assert res.missing_keys == [] and set(res.unexpected_keys) <= {"embeddings.position_ids"}
    return ref


def test_published_layout_loads_and_matches_reference(cxr_folder):
    assert not (cxr_folder / "modeling_cxrbert.py").exists()  # remote code is not needed
    cfg = json.loads((cxr_folder / "config.json").read_text())
    assert cfg["auto_map"]["AutoModel"] == "modeling_cxrbert.CXRBertModel" and cfg["model_type"] == "cxr-bert"

    enc, tok = load_cxrbert(cxr_folder, "cpu", torch.float32)
    assert isinstance(enc, CXRBertModel) and not enc.training
    assert not any(p.requires_grad for p in enc.parameters())
    batch = tok(PHRASES, padding="max_length", max_length=20, truncation=True, return_tensors="pt")
    out = enc(batch["input_ids"], batch["attention_mask"])
    assert out.shape == (2, 20, cfg["hidden_size"])
    ref = _reference(cxr_folder)
    with torch.no_grad():
        exp = ref(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    torch.testing.assert_close(out, exp, rtol=0, atol=1e-6)


def test_module_keys_are_the_published_keys(cxr_folder):
    sd = torch.load(cxr_folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    assert {k for k in sd if not k.startswith("bert.encoder.")} == PUBLISHED_NON_ENCODER_KEYS
    enc, _ = load_cxrbert(cxr_folder)
    # every key of the module is in the file; the file only adds the position_ids buffer
    assert set(sd) - set(enc.state_dict()) == {"bert.embeddings.position_ids"}
    assert set(enc.state_dict()) <= set(sd)
    for k, v in enc.state_dict().items():
        torch.testing.assert_close(v, sd[k], rtol=0, atol=0, msg=k)


def test_heads_loaded_and_tied(cxr_folder):
    enc, tok = load_cxrbert(cxr_folder)
    sd = torch.load(cxr_folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    assert enc.cls.predictions.decoder.weight is enc.bert.embeddings.word_embeddings.weight
    assert enc.cls.predictions.decoder.bias is enc.cls.predictions.bias
    batch = tok(PHRASES, padding=True, return_tensors="pt")
    z = enc.project_cls(batch["input_ids"], batch["attention_mask"])
    assert z.shape == (2, json.loads((cxr_folder / "config.json").read_text())["projection_size"])
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(2))
    # the projection head is hi-ml's: dense_to_hidden -> gelu -> LayerNorm -> dense_to_output on [CLS]
    h = enc(batch["input_ids"], batch["attention_mask"])[:, 0]
    x = torch.nn.functional.linear(h, sd["cls_projection_head.dense_to_hidden.weight"], sd["cls_projection_head.dense_to_hidden.bias"])
    x = torch.nn.functional.layer_norm(torch.nn.functional.gelu(x), x.shape[-1:], sd["cls_projection_head.LayerNorm.weight"],
                                       sd["cls_projection_head.LayerNorm.bias"], eps=1e-12)
    x = torch.nn.functional.linear(x, sd["cls_projection_head.dense_to_output.weight"], sd["cls_projection_head.dense_to_output.bias"])
    torch.testing.assert_close(enc.project_cls(batch["input_ids"], batch["attention_mask"], normalize=False), x)
    assert enc.mlm_logits(batch["input_ids"], batch["attention_mask"]).shape[-1] == enc.config.vocab_size


def test_tokenizer_uses_the_vocab_and_aligns_words(cxr_folder):
    _, tok = load_cxrbert(cxr_folder)
    vocab = (cxr_folder / "vocab.txt").read_text().splitlines()
    assert tok.is_fast
    assert len(tok) == len(vocab)
    assert tok.model_max_length == 512  # as published; the SD adapter forces 77
    for word in ("effusion", "pleural", "pneumo", "##thorax", "[CLS]", "[PAD]"):
        assert tok.convert_tokens_to_ids(word) == vocab.index(word)
    enc = tok(PHRASES, padding="max_length", max_length=16, truncation=True, return_offsets_mapping=True)
    assert enc.tokens(0)[:7] == ["[CLS]", "small", "left", "a", "##p", "##i", "##c"]
    assert enc.tokens(0)[8:11] == ["pneumo", "##thorax", "[SEP]"]
    assert enc.word_ids(0)[:11] == [None, 0, 1, 2, 2, 2, 2, 2, 3, 3, None]
    assert enc.tokens(1)[:8] == ["[CLS]", "big", "right", "-", "sided", "pleural", "effusion", "[SEP]"]
    assert enc["input_ids"][1][6] == vocab.index("effusion")
    assert enc["input_ids"][1][8:] == [vocab.index("[PAD]")] * 8
    assert enc["attention_mask"][1] == [1] * 8 + [0] * 8
    assert [PHRASES[0][s:e] for s, e in enc["offset_mapping"][0][8:10]] == ["pneumo", "thorax"]


def test_tokenizer_respects_do_lower_case_false(tmp_path, cxr_folder):
    folder = tmp_path / "tok"
    folder.mkdir()
    (folder / "vocab.txt").write_text((cxr_folder / "vocab.txt").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False, "model_max_length": 512}))
    tok = load_wordpiece_tokenizer(folder, model_max_length=77)
    assert tok.model_max_length == 77
    assert tok.tokenize("effusion Effusion")[0] == "effusion"
    assert tok.tokenize("Effusion") != ["effusion"]


def test_transformers5_vocab_file_pitfall_is_avoided(cxr_folder):
    """BertTokenizer(vocab_file=...) silently ignores the file under transformers 5; ours does not."""
    tok = load_wordpiece_tokenizer(cxr_folder)
    assert tok.convert_tokens_to_ids("effusion") != tok.unk_token_id
    assert tok.tokenize("pleural effusion") == ["pleural", "effusion"]


def test_missing_key_is_reported(tmp_path):
    folder = build_cxrbert_folder(tmp_path / "cxr")
    sd = torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    del sd["bert.encoder.layer.1.attention.self.query.weight"]
    del sd["cls_projection_head.dense_to_output.bias"]
    sd["bert.encoder.layer.9.output.dense.weight"] = torch.zeros(1)
    torch.save(sd, folder / "pytorch_model.bin")
    with pytest.raises(CheckpointMismatchError) as ei:
        load_cxrbert(folder)
    msg = str(ei.value)
    assert str(folder / "pytorch_model.bin") in msg
    assert "2 missing" in msg and "1 unexpected" in msg
    assert "bert.encoder.layer.1.attention.self.query.weight" in msg
    assert "cls_projection_head.dense_to_output.bias" in msg
    assert "bert.encoder.layer.9.output.dense.weight" in msg


def test_config_that_does_not_fit_the_weights(tmp_path):
    folder = build_cxrbert_folder(tmp_path / "cxr")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["intermediate_size"] = 48
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointMismatchError, match=r"intermediate.dense.weight: expected \(48, 32\), file has \(64, 32\)"):
        load_cxrbert(folder)


def test_safetensors_without_tied_copies_or_position_ids(tmp_path):
    """Newer save_pretrained drops tied copies and the position_ids buffer: still loads, same outputs."""
    pub = build_cxrbert_folder(tmp_path / "pub")
    new = build_cxrbert_folder(tmp_path / "new", weights="safetensors")
    sd = torch.load(pub / "pytorch_model.bin", map_location="cpu", weights_only=True)
    for k in ("bert.embeddings.position_ids", "cls.predictions.decoder.weight", "cls.predictions.decoder.bias"):
        sd.pop(k)
    save_file({k: v.contiguous().clone() for k, v in sd.items()}, str(new / "model.safetensors"))
    a, tok = load_cxrbert(pub)
    b, _ = load_cxrbert(new)
    batch = tok(PHRASES, padding=True, return_tensors="pt")
    torch.testing.assert_close(a(**{k: batch[k] for k in ("input_ids", "attention_mask")}),
                               b(batch["input_ids"], batch["attention_mask"]), rtol=0, atol=0)
    assert b.cls.predictions.decoder.weight is b.bert.embeddings.word_embeddings.weight


def test_untied_decoder_does_not_overwrite_embeddings(tmp_path):
    folder = build_cxrbert_folder(tmp_path / "cxr", weights="safetensors")
    from groundkit.core.safeload import load_state_dict

    sd = load_state_dict(folder / "model.safetensors")
    sd["cls.predictions.decoder.weight"] = torch.randn_like(sd["cls.predictions.decoder.weight"])
    save_file(sd, str(folder / "model.safetensors"))
    enc, _ = load_cxrbert(folder)
    torch.testing.assert_close(enc.bert.embeddings.word_embeddings.weight, sd["bert.embeddings.word_embeddings.weight"])
    torch.testing.assert_close(enc.cls.predictions.decoder.weight, sd["cls.predictions.decoder.weight"])


@pytest.mark.parametrize("bare_keys", [True, False])
def test_plain_bert_folder(tmp_path, bare_keys):
    folder = build_plain_bert_folder(tmp_path / "bert", bare_keys=bare_keys)
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["model_type"] == "bert"
    enc, tok = load_cxrbert(folder, "cpu", torch.float32)
    from groundkit.core.safeload import load_state_dict

    sd = load_state_dict(folder / "model.safetensors")
    assert any(k.startswith("embeddings.") for k in sd) == bare_keys
    ref = transformers.BertModel(build_bert_config(cfg), add_pooling_layer=False).eval()
    ref.load_state_dict({k.removeprefix("bert."): v for k, v in sd.items()
                         if not k.startswith(("pooler.", "bert.pooler.", "cls."))})
    batch = tok(PHRASES, padding=True, return_tensors="pt")
    with torch.no_grad():
        exp = ref(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    torch.testing.assert_close(enc(batch["input_ids"], batch["attention_mask"]), exp, rtol=0, atol=1e-6)
    assert not hasattr(enc, "cls_projection_head")


def test_sibling_tokenizer_folder_and_dtype(tmp_path):
    """diffusers layout: text_encoder/ without vocab, tokenizer/ next to it."""
    root = tmp_path / "tree"
    te = build_cxrbert_folder(root / "text_encoder", with_tokenizer=False)
    with pytest.raises(FileNotFoundError, match="vocab.txt"):
        load_cxrbert(te)
    full = build_cxrbert_folder(tmp_path / "full")
    (root / "tokenizer").mkdir()
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        (root / "tokenizer" / name).write_text((full / name).read_text())
    enc, tok = load_cxrbert(te, "cpu", torch.bfloat16, model_max_length=77)
    assert tok.model_max_length == 77
    assert all(p.dtype == torch.bfloat16 for p in enc.parameters())
    batch = tok(PHRASES, padding="max_length", max_length=77, return_tensors="pt")
    assert enc(batch["input_ids"], batch["attention_mask"]).dtype == torch.bfloat16


def test_unknown_model_type_is_refused(tmp_path):
    folder = build_cxrbert_folder(tmp_path / "cxr")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["model_type"], cfg["architectures"] = "roberta", ["RobertaModel"]
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="roberta"):
        load_cxrbert(folder)


def test_full_size_state_dict_layout_without_building_weights():
    """The full-size CXR-BERT config is BERT-base (checked without allocating it)."""
    from builders import CXRBERT_FULL

    cfg = build_bert_config(CXRBERT_FULL)
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.intermediate_size, cfg.vocab_size) == (
        768, 12, 12, 3072, 30522)
    assert len(wordpiece_vocab(30522)) == 30522
    assert CXRBERT_FULL["projection_size"] == 128 and CXRBERT_FULL["architectures"] == ["CXRBertModel"]
    assert callable(cxrbert_state_dict)
