"""Tiny (or full-size) text encoder folders in their published layouts, with random weights: CXR-BERT /
plain BERT with a WordPiece tokenizer, and CLIP (SD-2.1-base) with a byte-level BPE tokenizer. For tests and
benchmarks; nothing is downloaded."""
from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from groundkit.core.testing import redraw_zero_params, seeded, write_json

# Words that get whole-word tokens in the tiny vocabularies (both CLIP BPE and WordPiece). "pneumothorax" and
# "cardiomegaly" are deliberately absent: they split into several sub-tokens (WordPiece: pneumo ##thorax,
# cardio ##megaly), which the word-alignment code must handle.
REPORT_WORDS = [
    "the", "of", "and", "in", "is", "no", "a", "with", "there", "small", "large", "big", "mild", "moderate",
    "severe", "right", "left", "sided", "bilateral", "pleural", "effusion", "effusions",
    "consolidation", "opacity", "opacities", "atelectasis", "edema", "pulmonary", "lung",
    "lungs", "lobe", "lower", "upper", "middle", "base", "bases", "apex", "heart", "size", "enlarged",
    "normal", "tube", "line", "catheter", "pneumonia", "nodule", "mass", "fracture", "rib", "basilar",
    "retrocardiac", "hilar", "mediastinal", "silhouette", "stable", "unchanged", "increased", "decreased",
]


# SD-2.1-base text_encoder/config.json (CLIPTextModel, OpenCLIP ViT-H text tower minus its last layer)
CLIP_TEXT_FULL: dict[str, Any] = {
    "hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 23, "num_attention_heads": 16,
    "max_position_embeddings": 77, "hidden_act": "gelu", "layer_norm_eps": 1e-05, "projection_dim": 512,
    "vocab_size": 49408, "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1, "attention_dropout": 0.0,
    "dropout": 0.0, "initializer_factor": 1.0, "initializer_range": 0.02,
}
CLIP_TEXT_TINY = {
    **CLIP_TEXT_FULL, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 2, "projection_dim": 16,
}  # vocab_size is set to the tiny BPE vocabulary's size

# SD 1.x text_encoder/config.json (openai/clip-vit-large-patch14's text tower, saved by transformers 4.x);
# RoentGen fine-tunes this encoder with its U-Net
CLIP_L_TEXT_FULL: dict[str, Any] = {
    "architectures": ["CLIPTextModel"], "model_type": "clip_text_model", "hidden_size": 768,
    "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12, "max_position_embeddings": 77,
    "hidden_act": "quick_gelu", "layer_norm_eps": 1e-05, "projection_dim": 768, "vocab_size": 49408,
    "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1, "attention_dropout": 0.0, "dropout": 0.0,
    "initializer_factor": 1.0, "initializer_range": 0.02, "torch_dtype": "float32", "transformers_version": "4.22.0.dev0",
}
CLIP_L_TEXT_TINY = {**CLIP_L_TEXT_FULL, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                    "num_attention_heads": 2, "projection_dim": 32}

# microsoft/BiomedVLP-CXR-BERT-specialized config.json (BERT-base + projection_size)
CXRBERT_FULL: dict[str, Any] = {
    "architectures": ["CXRBertModel"],
    "auto_map": {
        "AutoConfig": "configuration_cxrbert.CXRBertConfig",
        "AutoModel": "modeling_cxrbert.CXRBertModel",
    },
    "model_type": "cxr-bert", "attention_probs_dropout_prob": 0.1, "gradient_checkpointing": False,
    "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": 768, "initializer_range": 0.02,
    "intermediate_size": 3072, "layer_norm_eps": 1e-12, "max_position_embeddings": 512,
    "num_attention_heads": 12, "num_hidden_layers": 12, "pad_token_id": 0,
    "position_embedding_type": "absolute", "projection_size": 128, "torch_dtype": "float32",
    "transformers_version": "4.17.0.dev0", "type_vocab_size": 2, "use_cache": True, "vocab_size": 30522,
}
# microsoft/BiomedVLP-BioViL-T config.json as published since its "Fix AutoConfig errors" commit: the same
# CXR-BERT trunk, but no model_type (the first revision said "bert"), auto_map naming only the remote-code
# classes, dropout 0.25, transformers 4.17.0. Its weights (pytorch_model.bin) are BioViL-T's own; the folder
# also holds the tokenizer (vocab.txt ...) and the image model (biovil_t_image_model_proj_size_128.pt).
BIOVILT_FULL: dict[str, Any] = {
    "_name_or_path": "microsoft/BiomedVLP-BioViL-T", "architectures": ["CXRBertModel"],
    "attention_probs_dropout_prob": 0.25,
    "auto_map": {"AutoModel": "modeling_cxrbert.CXRBertModel", "AutoConfig": "configuration_cxrbert.CXRBertConfig"},
    "classifier_dropout": None, "gradient_checkpointing": False, "hidden_act": "gelu", "hidden_dropout_prob": 0.25,
    "hidden_size": 768, "initializer_range": 0.02, "intermediate_size": 3072, "layer_norm_eps": 1e-12,
    "max_position_embeddings": 512, "num_attention_heads": 12, "num_hidden_layers": 12, "pad_token_id": 0,
    "position_embedding_type": "absolute", "projection_size": 128, "torch_dtype": "float32",
    "transformers_version": "4.17.0", "type_vocab_size": 2, "use_cache": True, "vocab_size": 30522,
}
BIOVILT_TINY = {**BIOVILT_FULL, "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2,
                "num_hidden_layers": 2, "max_position_embeddings": 160, "projection_size": 16}
CXRBERT_TINY = {**CXRBERT_FULL, "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2,
                "num_hidden_layers": 2, "max_position_embeddings": 128, "projection_size": 16}
# vocab_size of the tiny variant = size of the tiny WordPiece vocabulary


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable unicode character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def bpe(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    """Apply BPE merges (lowest rank first) to one pre-token, CLIP style (last symbol ends with </w>)."""
    syms = list(word[:-1]) + [word[-1] + "</w>"]
    while len(syms) > 1:
        pairs = [(ranks.get((a, b), 1 << 60), i) for i, (a, b) in enumerate(zip(syms, syms[1:]))]
        r, i = min(pairs)
        if r == 1 << 60:
            break
        a, b = syms[i], syms[i + 1]
        out, j = [], 0
        while j < len(syms):
            if j < len(syms) - 1 and syms[j] == a and syms[j + 1] == b:
                out.append(a + b)
                j += 2
            else:
                out.append(syms[j])
                j += 1
        syms = out
    return syms


def build_clip_tokenizer_files(
    folder: str | os.PathLike, words: list[str] | None = None, size: int | None = None, pad: str = "!"
) -> Path:
    """Write a small but valid CLIP BPE tokenizer in SD-2.1-base's ``tokenizer/`` layout.

    ``vocab.json`` follows CLIP's order: the 256 byte characters (so ``"!"`` is id 0), the same with
    ``</w>``, one entry per merge, then ``<|startoftext|>`` and ``<|endoftext|>`` last. Merges are chosen so
    that each of ``words`` (default :data:`REPORT_WORDS`) is a single token; other words split into several
    sub-tokens. Padding is ``"!"`` (id 0), as in SD 2.x's ``special_tokens_map.json`` (SD 1.x: ``pad=
    "<|endoftext|>"``). With ``size``
    (49408 for the real vocabulary size) unreachable filler entries pad the vocabulary so that
    ``<|startoftext|>`` / ``<|endoftext|>`` get CLIP's ids 49406 / 49407.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab_list, merges = _clip_vocab_and_merges(words or REPORT_WORDS, size)
    vocab = {t: i for i, t in enumerate(vocab_list)}
    write_json(folder / "vocab.json", vocab)
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8"
    )
    _write_clip_token_configs(folder, pad)
    return folder


def _clip_vocab_and_merges(words: list[str], size: int | None) -> tuple[list[str], list[tuple[str, str]]]:
    """(vocabulary in CLIP's order, merges): byte characters, the same with ``</w>``, one entry per merge that
    makes each word one token, filler up to ``size``, then the start and end tokens."""
    chars = list(bytes_to_unicode().values())
    vocab_list = chars + [c + "</w>" for c in chars]
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    known = set(vocab_list)
    for w in words:
        w = w.lower()
        syms = bpe(w, ranks)
        while len(syms) > 1:  # merge left to right until the word is one symbol
            pair = (syms[0], syms[1])
            ranks[pair] = len(merges)
            merges.append(pair)
            tok = pair[0] + pair[1]
            if tok not in known:
                known.add(tok)
                vocab_list.append(tok)
            syms = bpe(w, ranks)
    if size is not None:
        if size < len(vocab_list) + 2:
            raise ValueError(f"CLIP vocabulary size {size} < {len(vocab_list) + 2} required entries")
        vocab_list += [f"<|unused{i}|>" for i in range(size - 2 - len(vocab_list))]
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    return vocab_list, merges


def _write_clip_token_configs(folder: Path, pad: str) -> None:
    """``special_tokens_map.json`` and ``tokenizer_config.json`` as SD-2.1-base (pad "!") or SD 1.x ships them."""
    added = {"__type": "AddedToken", "lstrip": False, "normalized": True, "rstrip": False, "single_word": False}
    write_json(
        folder / "special_tokens_map.json",
        {
            "bos_token": {**{k: v for k, v in added.items() if k != "__type"}, "content": "<|startoftext|>"},
            "eos_token": {**{k: v for k, v in added.items() if k != "__type"}, "content": "<|endoftext|>"},
            "pad_token": ({"content": "!", "lstrip": False, "normalized": False, "rstrip": False, "single_word": False}
                          if pad == "!" else pad),
            "unk_token": {**{k: v for k, v in added.items() if k != "__type"}, "content": "<|endoftext|>"},
        },
    )
    write_json(
        folder / "tokenizer_config.json",
        {
            "add_prefix_space": False,
            "bos_token": {**added, "content": "<|startoftext|>"},
            "do_lower_case": True,
            "eos_token": {**added, "content": "<|endoftext|>"},
            "errors": "replace",
            "model_max_length": 77,
            "name_or_path": "stabilityai/stable-diffusion-2-1-base" if pad == "!" else "openai/clip-vit-large-patch14",
            "pad_token": pad,
            "special_tokens_map_file": "./special_tokens_map.json",
            "tokenizer_class": "CLIPTokenizer",
            "unk_token": {**added, "content": "<|endoftext|>"},
        },
    )


def build_clip_text_encoder(folder: str | os.PathLike, tiny: bool = True, seed: int = 0, vocab_size: int | None = None,
                            config: dict[str, Any] | None = None, legacy_bin: bool = False) -> Path:
    """``CLIPTextModel.save_pretrained`` (config.json + model.safetensors) of SD-2.1-base's text encoder
    (``config``: another CLIP text config, e.g. :data:`CLIP_L_TEXT_FULL`). ``legacy_bin``: the layout
    transformers 4.x wrote for 2022 SD 1.x releases instead: ``pytorch_model.bin`` with every key under
    ``text_model.`` and the ``text_model.embeddings.position_ids`` buffer."""
    from transformers import CLIPTextConfig, CLIPTextModel

    folder = Path(folder)
    cfg = dict(config if config is not None else (CLIP_TEXT_TINY if tiny else CLIP_TEXT_FULL))
    if vocab_size is not None:
        cfg["vocab_size"] = int(vocab_size)
    gen = seeded(seed)
    model = CLIPTextModel(CLIPTextConfig(**{k: v for k, v in cfg.items() if k not in ("architectures", "model_type")})).eval()
    redraw_zero_params(model, gen)
    if not legacy_bin:
        model.save_pretrained(folder, safe_serialization=True)
    else:
        folder.mkdir(parents=True, exist_ok=True)
        sd = {("" if k.startswith("text_model.") else "text_model.") + k: v for k, v in model.state_dict().items()}
        sd["text_model.embeddings.position_ids"] = torch.arange(cfg["max_position_embeddings"]).unsqueeze(0)
        torch.save(sd, folder / "pytorch_model.bin")
        write_json(folder / "config.json", cfg)
    del model
    return folder


def wordpiece_vocab(size: int | None = None, words: list[str] | None = None) -> list[str]:
    """A BERT WordPiece vocabulary: specials first ([PAD] 0, [UNK] 1, [CLS] 2, [SEP] 3, [MASK] 4, as in
    PubMedBERT/CXR-BERT), then single characters, their ``##`` continuations, a few sub-word pieces and
    :data:`REPORT_WORDS`; padded with ``[unusedN]`` entries to ``size`` when given."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789") + list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
    pieces = ["pneumo", "##thorax", "cardio", "##megaly", "##al", "##s", "##ed", "##ing", "##ity", "##ation"]
    out: list[str] = []
    seen: set[str] = set()
    for t in specials + chars + ["##" + c for c in chars if c.isalnum()] + pieces + list(words or REPORT_WORDS):
        if t not in seen:
            seen.add(t)
            out.append(t)
    if size is not None:
        if size < len(out):
            raise ValueError(f"vocabulary size {size} < {len(out)} required entries")
        out += [f"[unused{i}]" for i in range(size - len(out))]
    return out


def write_wordpiece_tokenizer(folder: Path, vocab: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("".join(t + "\n" for t in vocab), encoding="utf-8")
    write_json(
        folder / "special_tokens_map.json",
        {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]"},
    )
    # As published: uncased, model_max_length 512; tokenizer_class/auto_map name the remote-code tokenizer
    # (which groundkit ignores).
    write_json(
        folder / "tokenizer_config.json",
        {
            "do_lower_case": True,
            "model_max_length": 512,
            "tokenizer_class": "CXRBertTokenizer",
            "auto_map": {"AutoTokenizer": ["tokenization_cxrbert.CXRBertTokenizer", None]},
            "unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
            "mask_token": "[MASK]", "strip_accents": None, "tokenize_chinese_chars": True,
        },
    )


def cxrbert_state_dict(cfg: dict[str, Any], seed: int = 0) -> OrderedDict[str, torch.Tensor]:
    """Random weights with the published CXR-BERT-specialized state-dict keys.

    = ``BertForMaskedLM`` keys as saved by transformers 4.x (``bert.embeddings.position_ids`` buffer included,
    ``cls.predictions.decoder.{weight,bias}`` tied to the word embeddings / ``cls.predictions.bias``), plus
    ``cls_projection_head.{dense_to_hidden,LayerNorm,dense_to_output}.{weight,bias}``.
    """
    from transformers import BertConfig, BertForMaskedLM

    keys = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
            "hidden_act", "max_position_embeddings", "type_vocab_size", "layer_norm_eps", "pad_token_id")
    gen = seeded(seed)
    mlm = BertForMaskedLM(BertConfig(**{k: cfg[k] for k in keys})).eval()
    redraw_zero_params(mlm, gen)
    with torch.no_grad():  # LayerNorms/biases away from their 1/0 init, so a wrong mapping shows
        for name, p in mlm.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                p.add_(torch.randn(p.shape, generator=gen) * 0.02)
    # transformers 4.x saved the position_ids buffer (persistent then); place it where it was.
    ordered: OrderedDict[str, torch.Tensor] = OrderedDict()
    for k, v in mlm.state_dict().items():
        if k == "bert.embeddings.word_embeddings.weight":
            ordered["bert.embeddings.position_ids"] = torch.arange(cfg["max_position_embeddings"]).unsqueeze(0)
        ordered[k] = v
    if "cls.predictions.decoder.weight" not in ordered:
        ordered["cls.predictions.decoder.weight"] = ordered["bert.embeddings.word_embeddings.weight"]
    if "cls.predictions.decoder.bias" not in ordered:
        ordered["cls.predictions.decoder.bias"] = ordered["cls.predictions.bias"]
    h, p = cfg["hidden_size"], cfg["projection_size"]
    ordered["cls_projection_head.dense_to_hidden.weight"] = torch.randn(p, h, generator=gen) * 0.02
    ordered["cls_projection_head.dense_to_hidden.bias"] = torch.randn(p, generator=gen) * 0.02
    ordered["cls_projection_head.LayerNorm.weight"] = 1 + torch.randn(p, generator=gen) * 0.02
    ordered["cls_projection_head.LayerNorm.bias"] = torch.randn(p, generator=gen) * 0.02
    ordered["cls_projection_head.dense_to_output.weight"] = torch.randn(p, p, generator=gen) * 0.02
    ordered["cls_projection_head.dense_to_output.bias"] = torch.randn(p, generator=gen) * 0.02
    del mlm
    return ordered


def build_cxrbert_folder(
    folder: str | os.PathLike,
    tiny: bool = True,
    seed: int = 0,
    with_tokenizer: bool = True,
    weights: str = "bin",
) -> Path:
    """A ``microsoft/BiomedVLP-CXR-BERT-specialized``-style folder: config.json (architectures
    ["CXRBertModel"], auto_map to the remote-code modules - which are NOT written), ``pytorch_model.bin``
    (``weights="bin"``, torch.save as published) or ``model.safetensors``, and, with ``with_tokenizer``,
    vocab.txt + tokenizer_config.json + special_tokens_map.json."""
    folder, vocab, cfg = _bert_folder_start(folder, CXRBERT_TINY if tiny else CXRBERT_FULL, tiny)
    write_json(folder / "config.json", cfg)
    sd = cxrbert_state_dict(cfg, seed)
    if weights == "bin":
        torch.save(sd, folder / "pytorch_model.bin")
    elif weights == "safetensors":
        from safetensors.torch import save_file

        # safetensors refuses shared storage: store the tied copies as separate tensors.
        save_file({k: v.contiguous().clone() for k, v in sd.items()}, str(folder / "model.safetensors"))
    else:
        raise ValueError(f"weights must be 'bin' or 'safetensors', not {weights!r}")
    if with_tokenizer:
        write_wordpiece_tokenizer(folder, vocab)
    return folder


def _bert_folder_start(folder, config: dict, tiny: bool) -> tuple[Path, list[str], dict]:
    """The folder, its WordPiece vocabulary (the full size's, or a small one for tiny models) and the config."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = wordpiece_vocab(None if tiny else config["vocab_size"])
    cfg = dict(config)
    if tiny:
        cfg["vocab_size"] = len(vocab)
    return folder, vocab, cfg


def build_plain_bert_folder(
    folder: str | os.PathLike, hidden_size: int = 32, num_layers: int = 2, seed: int = 0, bare_keys: bool = True
) -> Path:
    """A plain BERT folder (model_type "bert"): ``BertModel.save_pretrained``-style bare keys
    (``embeddings.*``, ``encoder.*``, ``pooler.*``) when ``bare_keys``, else ``bert.*`` keys of a
    ``BertForMaskedLM`` in ``model.safetensors``; plus the WordPiece tokenizer files."""
    from safetensors.torch import save_file
    from transformers import BertConfig, BertForMaskedLM, BertModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = wordpiece_vocab()
    cfg = {
        "architectures": ["BertModel" if bare_keys else "BertForMaskedLM"], "model_type": "bert",
        "vocab_size": len(vocab), "hidden_size": hidden_size, "num_hidden_layers": num_layers,
        "num_attention_heads": 2, "intermediate_size": 2 * hidden_size, "max_position_embeddings": 128,
        "hidden_act": "gelu", "layer_norm_eps": 1e-12, "pad_token_id": 0, "type_vocab_size": 2,
    }
    write_json(folder / "config.json", cfg)
    gen = seeded(seed)
    bc = BertConfig(**{k: v for k, v in cfg.items() if k not in ("architectures", "model_type")})
    model = BertModel(bc, add_pooling_layer=True) if bare_keys else BertForMaskedLM(bc)
    redraw_zero_params(model, gen)
    sd = {k: v.contiguous().clone() for k, v in model.state_dict().items()}
    save_file(sd, str(folder / "model.safetensors"))
    write_wordpiece_tokenizer(folder, vocab)
    return folder


def build_biovilt_folder(folder: str | os.PathLike, tiny: bool = True, seed: int = 0, revision: str = "main") -> Path:
    """A ``microsoft/BiomedVLP-BioViL-T`` snapshot: config.json as published (:data:`BIOVILT_FULL`;
    ``revision="initial"``: the first commit's, ``model_type: "bert"`` and only ``AutoModel`` in auto_map),
    ``pytorch_model.bin`` with CXR-BERT's keys (its own random values), the WordPiece tokenizer files beside
    it, and a stand-in for the image model file, which a text encoder never reads."""
    folder, vocab, cfg = _bert_folder_start(folder, BIOVILT_TINY if tiny else BIOVILT_FULL, tiny)
    if revision == "initial":
        cfg["model_type"] = "bert"
        cfg["auto_map"] = {"AutoModel": "modeling_cxrbert.CXRBertModel"}
    write_json(folder / "config.json", cfg)
    torch.save(cxrbert_state_dict(cfg, seed), folder / "pytorch_model.bin")
    write_wordpiece_tokenizer(folder, vocab)
    torch.save({"encoder.encoder.conv1.weight": torch.randn(4, 3, 3, 3, generator=seeded(seed + 1))},
               folder / "biovil_t_image_model_proj_size_128.pt")
    return folder
