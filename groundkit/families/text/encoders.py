"""Which text encoder a folder holds (BERT-family or CLIP), how to load it, and what ``checkpoints verify``
checks for it: one place, used by every family that reads a text encoder folder."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from groundkit.core.adapter import Component
from groundkit.core.io import read_json
from groundkit.families.text import clip
from groundkit.families.text.cxrbert import (
    TOLERATED_UNEXPECTED,
    WEIGHT_FILES,
    CXRBertModel,
    build_bert_config,
    config_kind,
    load_cxrbert,
    read_text_encoder_config,
)

CLIP_TYPES = ("clip_text_model", "clip")


def encoder_kind(te_dir: Path) -> str:
    """"clip" or "bert", from ``config.json`` (model_type / architectures)."""
    cfg = read_json(te_dir / "config.json", "text encoder config")
    if not isinstance(cfg, dict):
        raise ValueError(f"{te_dir / 'config.json'}: expected a JSON object")
    model_type = cfg.get("model_type", "")
    if model_type in CLIP_TYPES:
        return "clip"
    if model_type in ("bert", "cxr-bert") or "Bert" in " ".join(cfg.get("architectures", [])):
        return "bert"
    raise ValueError(f"{te_dir / 'config.json'}: unsupported text encoder model_type {model_type!r} "
                     "(expected bert, cxr-bert or clip_text_model)")


def load_text_encoder(te_dir: Path, tok_dir: Path) -> tuple[torch.nn.Module, Any, bool]:
    """(encoder, tokenizer, pass the attention mask to the encoder) for a BERT-family or CLIP folder."""
    if encoder_kind(te_dir) == "clip":
        return clip.load_clip_text_model(te_dir), clip.load_clip_tokenizer(tok_dir), uses_mask("clip")
    encoder, tokenizer = load_cxrbert(te_dir, tokenizer_folder=tok_dir if tok_dir.is_dir() else None)
    return encoder, tokenizer, uses_mask("bert")


def text_width(te_dir: Path) -> int | None:
    """The hidden size of the text encoder in ``te_dir`` (BERT-family or CLIP), None if unreadable."""
    try:
        cfg = read_json(te_dir / "config.json", "text encoder config")
    except (FileNotFoundError, ValueError):
        return None
    if not isinstance(cfg, dict):
        return None
    width = cfg.get("hidden_size", (cfg.get("text_config") or {}).get("hidden_size"))
    return int(width) if isinstance(width, int) else None


def module_kind(encoder: torch.nn.Module) -> str:
    """"clip" or "bert" for a text encoder already in memory (its config's model_type, else its class)."""
    cfg = getattr(encoder, "config", None)
    model_type = str(getattr(cfg, "model_type", "") or "")
    if model_type in CLIP_TYPES or "CLIP" in type(encoder).__name__:
        return "clip"
    return "bert"


def uses_mask(kind: str) -> bool:
    """Whether phrases are encoded with the tokenizer's attention mask: CXR-BERT's published use passes it,
    SD's CLIP pipelines do not."""
    return kind != "clip"


def require_fast_tokenizer(tokenizer: Any) -> Any:
    """groundkit aligns tokens to words with a fast tokenizer's ``word_ids`` and offsets."""
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError(f"{type(tokenizer).__name__} is a slow tokenizer: groundkit needs a fast one (word ids and "
                        "offsets), e.g. CLIPTokenizerFast / BertTokenizerFast loaded from the same files")
    return tokenizer


# ---------------------------------------------------------------------------------------------------
# what verify checks


def bert_on_meta(te_dir: Path, file_keys: set[str]) -> torch.nn.Module:
    """groundkit's CXRBertModel as the loader would build it for a file with these keys, on the meta device."""
    cfg = read_text_encoder_config(te_dir)
    where = str(te_dir / "config.json")
    kind = config_kind(cfg, where)
    config = build_bert_config(cfg, where)
    pref = "" if not any(k.startswith("bert.") for k in file_keys) else "bert."
    pooler = any(k.startswith(pref + "pooler.") for k in file_keys)
    with torch.device("meta"):
        if kind == "cxr-bert":
            return CXRBertModel(config, projection_size=int(cfg.get("projection_size", 128)), mlm_head=True, pooler=pooler)
        has_proj = any(k.startswith("cls_projection_head.") for k in file_keys)
        return CXRBertModel(config, projection_size=int(cfg["projection_size"]) if has_proj and cfg.get("projection_size") else None,
                            mlm_head=any(k.startswith("cls.predictions.") for k in file_keys), pooler=pooler)


def bert_normalize(model: torch.nn.Module, sd: Mapping[str, Any]) -> tuple[dict[str, Any], int, list[str]]:
    """The loader's key handling: bare BertModel keys get ``bert.``, rebuilt buffers and the NSP head are
    tolerated, tied copies that newer ``save_pretrained`` omits are filled from what they are tied to."""
    own = set(model.state_dict())
    sd = dict(sd)
    n = 0
    if not any(k.startswith("bert.") for k in sd) and any(k.startswith("embeddings.") for k in sd):
        sd = {"bert." + k: v for k, v in sd.items()}
        n = len(sd)
    dropped = [k for k in list(sd) if k in TOLERATED_UNEXPECTED or k.startswith("cls.seq_relationship.")]
    for k in dropped:
        sd.pop(k)
    for copy, src in (("cls.predictions.decoder.weight", "bert.embeddings.word_embeddings.weight"),
                      ("cls.predictions.decoder.bias", "cls.predictions.bias")):
        if copy in own and copy not in sd and src in sd:
            sd[copy] = sd[src]
        elif src in own and src not in sd and copy in sd:
            sd[src] = sd[copy]
    return sd, n, dropped


def _weights(folder: Path) -> tuple[Path, ...]:
    return tuple(folder / n for n in WEIGHT_FILES) + tuple(folder / (n + ".index.json") for n in WEIGHT_FILES)


def text_encoder_components(te_dir: Path, tok_dir: Path, hint: str, label: str = "text encoder") -> list[Component]:
    """config.json, weights (deep key check against the module the loader builds) and tokenizer files."""
    cfg_file = te_dir / "config.json"
    if not cfg_file.is_file():
        return [Component(f"{label} config", (cfg_file,), "config", hint),
                Component(f"{label} weights", _weights(te_dir), "weights", hint),
                Component("tokenizer", (tok_dir / "vocab.txt",), "file", hint)]
    try:
        kind = encoder_kind(te_dir)
    except ValueError as exc:
        return [Component(f"{label} config", (cfg_file,), "config", hint, check=_raise(exc))]
    if kind == "clip":
        out = [Component(f"{label} config", (cfg_file,), "config", hint, check=lambda: (clip.clip_config(te_dir), None)[1]),
               Component(f"CLIP {label}", _weights(te_dir), "weights", hint, build=lambda keys: clip.clip_on_meta(te_dir),
                         normalize=clip.normalize)]
        if (tok_dir / "tokenizer.json").is_file():
            return out + [Component("CLIP tokenizer", (tok_dir / "tokenizer.json",), "file", hint)]
        return out + [Component("CLIP tokenizer", (tok_dir / n,), "file", hint) for n in ("vocab.json", "merges.txt")]
    if not (tok_dir / "vocab.txt").is_file() and (te_dir / "vocab.txt").is_file():
        tok_dir = te_dir
    return [Component(f"{label} config", (cfg_file,), "config", hint),
            Component(label, _weights(te_dir), "weights", hint, build=lambda keys: bert_on_meta(te_dir, keys),
                      normalize=bert_normalize),
            Component("tokenizer", (tok_dir / "vocab.txt",), "file", hint)]


def _raise(exc: Exception):
    def check() -> None:
        raise exc
    return check
