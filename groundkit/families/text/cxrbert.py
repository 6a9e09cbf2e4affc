"""CXR-BERT-specialized (and plain BERT) text encoders, loaded without remote code.

The published ``microsoft/BiomedVLP-CXR-BERT-specialized`` folder declares ``model_type: "cxr-bert"`` and an
``auto_map`` pointing at ``modeling_cxrbert.CXRBertModel``, which ``transformers`` would only load with
``trust_remote_code=True``. groundkit never does that: :class:`CXRBertModel` below is a local definition whose
state-dict keys are exactly those of the published checkpoint (hi-ml-multimodal's ``CXRBertModel``, a
``BertForMaskedLM`` plus a projection head):

* ``bert.embeddings.*``, ``bert.encoder.layer.<i>.*``  - the BERT trunk (no pooler);
* ``cls.predictions.bias``, ``cls.predictions.transform.{dense,LayerNorm}.*``,
  ``cls.predictions.decoder.{weight,bias}``  - the masked-LM head (decoder tied to the word embeddings and to
  ``cls.predictions.bias``);
* ``cls_projection_head.{dense_to_hidden,LayerNorm,dense_to_output}.*``  - the CLS projection (to
  ``projection_size`` = 128).

Only the trunk's last hidden state is used for grounding (it feeds the U-Net cross-attention directly); the
heads are loaded so that the key check can be strict and :meth:`CXRBertModel.project_cls` is available.

Tolerated differences (documented, everything else is an error naming the file):

* ``bert.embeddings.position_ids`` / ``bert.embeddings.token_type_ids``: buffers that older ``transformers``
  versions saved (the published checkpoint, saved with transformers 4.x, carries ``position_ids``). They are
  constants (``arange`` / zeros) rebuilt by the module, so they are dropped.
* ``cls.predictions.decoder.weight`` / ``cls.predictions.decoder.bias`` may be absent (newer
  ``save_pretrained`` drops tied copies); they are then filled from the tensors they are tied to. If the file
  holds untied values that differ, the module unties them instead of silently overwriting.
* Plain BERT folders (``model_type: "bert"``) may store bare ``BertModel`` keys (``embeddings.*``), which get
  the ``bert.`` prefix; a pooler and an MLM head are built when the file has them, and the next-sentence head
  of ``BertForPreTraining`` checkpoints (``cls.seq_relationship.*``) is dropped.

The tokenizer is built from ``vocab.txt`` directly (WordPiece, fast / ``tokenizers``-backed, so
``word_ids()`` and offsets are available) by :func:`load_wordpiece_tokenizer`, which lives in
:mod:`groundkit.families.text.wordpiece` and is re-exported here.
"""
from __future__ import annotations

import json
import logging
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from groundkit.core.safeload import CheckpointError, CheckpointMismatchError, load_into, load_state_dict
from groundkit.families.common import quiet_transformers
from groundkit.families.text.wordpiece import load_wordpiece_tokenizer

__all__ = [
    "CXRBertModel",
    "build_bert_config",
    "read_text_encoder_config",
    "load_cxrbert",
    "load_wordpiece_tokenizer",
    "find_weights_file",
    "TOLERATED_UNEXPECTED",
]

log = logging.getLogger(__name__)

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# Buffers that some transformers versions saved; rebuilt by the module, dropped on load.
TOLERATED_UNEXPECTED = ("bert.embeddings.position_ids", "bert.embeddings.token_type_ids")
_NSP_PREFIX = "cls.seq_relationship."  # BertForPreTraining's next-sentence head (plain BERT only)

# BertConfig fields read from config.json; everything else (auto_map, architectures, transformers_version,
# torch_dtype, gradient_checkpointing, ...) is ignored.
_BERT_FIELDS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "max_position_embeddings",
    "type_vocab_size",
    "initializer_range",
    "layer_norm_eps",
    "pad_token_id",
    "tie_word_embeddings",
)


# --------------------------------------------------------------------------------------------------
# config


def read_text_encoder_config(folder: str | os.PathLike) -> dict[str, Any]:
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"text encoder config not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc


def config_kind(cfg: dict[str, Any], where: str) -> str:
    model_type = str(cfg.get("model_type", "")).lower()
    archs = [str(a) for a in cfg.get("architectures") or []]
    if model_type in ("cxr-bert", "cxr_bert", "cxrbert") or any("CXRBert" in a for a in archs):
        return "cxr-bert"
    if model_type == "bert":
        return "bert"
    raise ValueError(
        f"{where}: unsupported text encoder model_type {cfg.get('model_type')!r} "
        "(groundkit's BERT loader handles 'cxr-bert' and 'bert')"
    )


def build_bert_config(cfg: dict[str, Any], where: str = "config.json"):
    """A ``transformers.BertConfig`` from a (CXR-)BERT config.json dict, ignoring auto_map and friends."""
    from transformers import BertConfig

    quiet_transformers()
    pet = cfg.get("position_embedding_type", "absolute")
    if pet not in (None, "absolute"):
        raise ValueError(f"{where}: position_embedding_type {pet!r} is not supported (only 'absolute')")
    for flag in ("is_decoder", "add_cross_attention"):
        if cfg.get(flag):
            raise ValueError(f"{where}: {flag}=true is not supported for a text encoder")
    kwargs = {k: cfg[k] for k in _BERT_FIELDS if k in cfg and cfg[k] is not None}
    return BertConfig(**kwargs)


# --------------------------------------------------------------------------------------------------
# modules with the published key layout


class _PredictionTransform(nn.Module):
    def __init__(self, config) -> None:
        super().__init__()
        from transformers.activations import ACT2FN

        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        act = config.hidden_act
        self.act = ACT2FN[act] if isinstance(act, str) else act
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.act(self.dense(x)))


class _LMPredictionHead(nn.Module):
    def __init__(self, config) -> None:
        super().__init__()
        self.transform = _PredictionTransform(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=True)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.decoder.bias = self.bias  # tied, as in transformers' BertLMPredictionHead

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(x))


class _MLMHead(nn.Module):  # "cls"
    def __init__(self, config) -> None:
        super().__init__()
        self.predictions = _LMPredictionHead(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.predictions(x)


class _ProjectionHead(nn.Module):  # "cls_projection_head"
    def __init__(self, hidden_size: int, projection_size: int) -> None:
        super().__init__()
        self.dense_to_hidden = nn.Linear(hidden_size, projection_size)
        self.LayerNorm = nn.LayerNorm(projection_size, eps=1e-12)
        self.dense_to_output = nn.Linear(projection_size, projection_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense_to_output(self.LayerNorm(F.gelu(self.dense_to_hidden(x))))


class CXRBertModel(nn.Module):
    """BERT trunk (+ optional MLM head, projection head, pooler) with CXR-BERT's state-dict keys.

    ``forward(input_ids, attention_mask)`` returns the trunk's last hidden state ``(B, N, hidden)``.
    """

    def __init__(
        self,
        config,
        projection_size: int | None = 128,
        mlm_head: bool = True,
        pooler: bool = False,
    ) -> None:
        super().__init__()
        from transformers import BertModel

        self.config = config
        self.bert = BertModel(config, add_pooling_layer=pooler)
        if mlm_head:
            self.cls = _MLMHead(config)
            if getattr(config, "tie_word_embeddings", True):
                self.cls.predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight
        if projection_size:
            self.cls_projection_head = _ProjectionHead(config.hidden_size, int(projection_size))

    @property
    def hidden_size(self) -> int:
        return int(self.config.hidden_size)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        out = self.bert(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, return_dict=True
        )
        return out.last_hidden_state

    def mlm_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if not hasattr(self, "cls"):
            raise AttributeError("this checkpoint has no masked-LM head")
        return self.cls(self.forward(input_ids, attention_mask))

    def project_cls(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, normalize: bool = True
    ) -> torch.Tensor:
        """CXR-BERT's joint-space embedding of the [CLS] token (l2-normalised by default)."""
        if not hasattr(self, "cls_projection_head"):
            raise AttributeError("this checkpoint has no CLS projection head")
        z = self.cls_projection_head(self.forward(input_ids, attention_mask)[:, 0])
        return F.normalize(z, dim=-1) if normalize else z


# --------------------------------------------------------------------------------------------------
# loading


def find_weights_file(folder: str | os.PathLike) -> Path:
    folder = Path(folder)
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    sharded = [p.name for p in folder.glob("*.index.json")]
    if sharded:
        raise CheckpointError(f"{folder}: sharded checkpoints ({', '.join(sharded)}) are not supported for text encoders")
    raise FileNotFoundError(f"no text encoder weights in {folder} (looked for {', '.join(WEIGHT_FILES)})")


def _prepare_state_dict(
    sd: dict[str, torch.Tensor], kind: str, file: Path
) -> tuple[dict[str, torch.Tensor], dict[str, bool]]:
    """Normalise key prefixes, drop tolerated extras; return the dict and which optional parts it has."""
    sd = OrderedDict(sd)
    if kind == "bert" and not any(k.startswith("bert.") for k in sd) and any(k.startswith("embeddings.") for k in sd):
        sd = OrderedDict(("bert." + k, v) for k, v in sd.items())  # bare BertModel keys
    for k in TOLERATED_UNEXPECTED:
        if k in sd:
            v = sd.pop(k)
            if k.endswith("position_ids") and not torch.equal(
                v.reshape(-1).long(), torch.arange(v.numel(), dtype=torch.long)
            ):
                log.warning("%s: stored %s is not arange(); it is ignored (the module rebuilds it)", file, k)
    if kind == "bert":
        for k in [k for k in sd if k.startswith(_NSP_PREFIX)]:
            sd.pop(k)
    parts = {
        "pooler": any(k.startswith("bert.pooler.") for k in sd),
        "mlm": any(k.startswith("cls.predictions.") for k in sd),
        "projection": any(k.startswith("cls_projection_head.") for k in sd),
    }
    return sd, parts


def _fill_and_untie(model: CXRBertModel, sd: dict[str, torch.Tensor], file: Path) -> None:
    """Fill tied copies the file omits; untie parameters whose stored copies really differ."""
    if not hasattr(model, "cls"):
        return
    head = model.cls.predictions
    pairs = [
        ("cls.predictions.decoder.weight", "bert.embeddings.word_embeddings.weight", "weight"),
        ("cls.predictions.decoder.bias", "cls.predictions.bias", "bias"),
    ]
    for copy_key, src_key, attr in pairs:
        src_param = model.bert.embeddings.word_embeddings.weight if attr == "weight" else head.bias
        tied = getattr(head.decoder, attr) is src_param
        if not tied:
            continue
        if copy_key not in sd and src_key in sd:
            sd[copy_key] = sd[src_key]
        elif src_key not in sd and copy_key in sd:
            sd[src_key] = sd[copy_key]
        elif copy_key in sd and src_key in sd and sd[copy_key].shape == sd[src_key].shape:
            if not torch.equal(sd[copy_key], sd[src_key]):
                log.info("%s: %s differs from %s; loading them untied", file, copy_key, src_key)
                setattr(head.decoder, attr, nn.Parameter(src_param.detach().clone()))


def load_cxrbert(
    folder: str | os.PathLike,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    *,
    tokenizer_folder: str | os.PathLike | None = None,
    model_max_length: int | None = None,
) -> tuple[CXRBertModel, Any]:
    """Load a CXR-BERT(-specialized) or plain BERT folder as ``(encoder, tokenizer)`` without remote code.

    ``folder`` holds ``config.json`` (``model_type`` "cxr-bert" or "bert"; ``auto_map`` is ignored) and
    ``model.safetensors`` or ``pytorch_model.bin`` (read with ``weights_only``). The tokenizer comes from
    ``tokenizer_folder``, else ``folder`` if it has ``vocab.txt``, else a sibling ``tokenizer/`` folder (the
    diffusers layout). ``model_max_length`` overrides the tokenizer's (the published value is 512).
    The encoder is in eval mode with gradients off; ``encoder(input_ids, attention_mask)`` is the last hidden
    state ``(B, N, hidden)``.
    """
    folder = Path(folder)
    cfg = read_text_encoder_config(folder)
    kind = config_kind(cfg, str(folder / "config.json"))
    config = build_bert_config(cfg, str(folder / "config.json"))
    file = find_weights_file(folder)
    sd, parts = _prepare_state_dict(load_state_dict(file), kind, file)

    if kind == "cxr-bert":
        projection_size = int(cfg.get("projection_size", 128))
        model = CXRBertModel(config, projection_size=projection_size, mlm_head=True, pooler=parts["pooler"])
    else:
        model = CXRBertModel(
            config,
            projection_size=int(cfg["projection_size"]) if parts["projection"] and cfg.get("projection_size") else None,
            mlm_head=parts["mlm"],
            pooler=parts["pooler"],
        )
    _fill_and_untie(model, sd, file)
    try:
        load_into(model, sd, file, strict=True, what=f"{'CXR-BERT' if kind == 'cxr-bert' else 'BERT'} text encoder")
    except CheckpointMismatchError as exc:
        raise CheckpointMismatchError(
            f"{exc}\n  (text encoder folder {folder}; config.json says model_type={cfg.get('model_type')!r}, "
            f"hidden_size={config.hidden_size}, num_hidden_layers={config.num_hidden_layers}, "
            f"vocab_size={config.vocab_size})"
        ) from None
    model = model.to(device=device, dtype=dtype).eval().requires_grad_(False)

    tok_dir = _resolve_tokenizer_folder(folder, tokenizer_folder)
    tokenizer = load_wordpiece_tokenizer(tok_dir, model_max_length=model_max_length)
    n_vocab = len(tokenizer)
    if n_vocab > config.vocab_size:
        raise ValueError(
            f"tokenizer in {tok_dir} has {n_vocab} tokens but the text encoder in {folder} only "
            f"{config.vocab_size} embeddings: tokenizer and encoder do not belong together"
        )
    return model, tokenizer


def _resolve_tokenizer_folder(folder: Path, tokenizer_folder: str | os.PathLike | None) -> Path:
    if tokenizer_folder is not None:
        return Path(tokenizer_folder)
    for cand in (folder, folder.parent / "tokenizer"):
        if (cand / "vocab.txt").is_file():
            return cand
    raise FileNotFoundError(f"no vocab.txt in {folder} or {folder.parent / 'tokenizer'} for the WordPiece tokenizer")
