"""The one seam between model families and everything generic (engine, tokens, post-processing).

An adapter knows how to load one family from its published on-disk layout, turn an image into a
latent, a phrase into a context, run one U-Net call, and where the cross-attention layers are.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch

from ..geometry import Geometry


@dataclass(frozen=True)
class LayerInfo:
    """One cross-attention (``attn2``) layer, in canonical (forward) order."""

    index: int
    name: str  # module path inside the U-Net, e.g. "down_blocks.1.attentions.0.transformer_blocks.0.attn2"
    resolution: int  # query grid side (maps are resolution x resolution, row-major)


@dataclass
class TextBatch:
    """Encoded phrases, plus what the token filters need to align words with sub-tokens."""

    phrases: list[str]
    embeddings: torch.Tensor  # (B, N, D) context fed to cross-attention
    tokens: list[list[str]]  # (B, N) token strings, padding included
    word_ids: list[list[int | None]]  # (B, N) index of the word a token belongs to; None for special/pad
    word_spans: list[list[tuple[int, int]]]  # (B, n_words) character span of each word in its phrase
    special: torch.Tensor  # (B, N) bool: start/end/pad tokens
    start_index: int = 0  # position of the start token (the "image bias" token of BBM)


@dataclass(frozen=True)
class NoiseSchedule:
    alphas_cumprod: torch.Tensor  # (num_train_timesteps,) float64
    prediction_type: str  # "epsilon" | "v_prediction"
    final_alpha_cumprod: float  # alpha used past the last step when sampling (set_alpha_to_one=False -> abar[0])

    @property
    def num_train_timesteps(self) -> int:
        return int(self.alphas_cumprod.shape[0])

    def split(self, z: torch.Tensor, pred: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x0, eps) from the model prediction at cumulative alpha ``a`` (broadcastable)."""
        sa, s1a = a.sqrt(), (1 - a).sqrt()
        if self.prediction_type == "v_prediction":
            return sa * z - s1a * pred, sa * pred + s1a * z
        if self.prediction_type == "epsilon":
            return (z - s1a * pred) / sa, pred
        raise ValueError(f"unsupported prediction_type {self.prediction_type!r} (expected 'epsilon' or 'v_prediction')")


@runtime_checkable
class Adapter(Protocol):
    """What the engine needs from a model family. Register with the ``groundkit.adapters`` entry point."""

    name: str
    image_size: int  # side of the square model input (crop space)
    device: torch.device
    dtype: torch.dtype
    schedule: NoiseSchedule

    @classmethod
    def detect(cls, path: str) -> bool:
        """True if ``path`` is a folder laid out the way this family publishes its weights."""

    @classmethod
    def from_entry(cls, entry: dict[str, Any], device: str | torch.device, dtype: torch.dtype) -> "Adapter": ...

    def preprocess(self, image) -> tuple[torch.Tensor, Geometry]:
        """Float image (H, W) in [0, 1] -> model-space pixels (1, C, S, S) and the crop geometry."""

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """Model-space pixels -> scaled latent z0 (deterministic: posterior mean)."""

    def encode_text(self, phrases: list[str]) -> TextBatch: ...

    def unet(self, z_t: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor: ...

    def cross_attention_layers(self) -> list[LayerInfo]: ...

    def attention_modules(self) -> dict[str, torch.nn.Module]:
        """name -> the ``attn2`` module, for the engine to install capture on."""


def square_crop(image: torch.Tensor, size: int) -> tuple[torch.Tensor, Geometry]:
    """(H, W) float image -> (1, 1, size, size): short side resized (bilinear, no antialias, as both
    papers' transforms do), then center-cropped. The Geometry inverts it."""
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image, got shape {tuple(image.shape)}")
    geo = Geometry(int(image.shape[0]), int(image.shape[1]), size)
    x = image[None, None].float()
    rh, rw = geo.resized_hw
    if (rh, rw) != tuple(image.shape):
        x = torch.nn.functional.interpolate(x, size=(rh, rw), mode="bilinear", align_corners=False)
    top, left = geo.crop_offset
    return x[:, :, top : top + size, left : left + size].contiguous(), geo


def encode_with(tokenizer, encoder, phrases: list[str], max_length: int, pass_mask: bool, device, dtype) -> TextBatch:
    """Tokenize to a fixed length and encode; word alignment comes from the fast tokenizer's
    ``word_ids`` and offsets, never from guessing positions."""
    enc = tokenizer(
        list(phrases), padding="max_length", max_length=max_length, truncation=True,
        return_tensors="pt", return_offsets_mapping=True,
    )
    ids = enc["input_ids"].to(device)
    kwargs = {"attention_mask": enc["attention_mask"].to(device)} if pass_mask else {}
    with torch.no_grad():
        out = encoder(ids, **kwargs)
    hidden = out[0] if isinstance(out, (tuple, list)) else getattr(out, "last_hidden_state", out)
    tokens, word_ids, spans = [], [], []
    for b in range(len(phrases)):
        wid = list(enc.word_ids(b))
        offsets = enc["offset_mapping"][b].tolist()
        n_words = 1 + max((w for w in wid if w is not None), default=-1)
        span = [[None, None] for _ in range(n_words)]
        for w, (s, e) in zip(wid, offsets):
            if w is None:
                continue
            span[w][0] = s if span[w][0] is None else min(span[w][0], s)
            span[w][1] = e if span[w][1] is None else max(span[w][1], e)
        tokens.append(tokenizer.convert_ids_to_tokens(enc["input_ids"][b].tolist()))
        word_ids.append(wid)
        spans.append([(int(s), int(e)) for s, e in span])
    special = torch.tensor([[w is None for w in wid] for wid in word_ids])
    return TextBatch(list(phrases), hidden.to(dtype), tokens, word_ids, spans, special, start_index=0)


_LEVEL_PREFIXES = (("down_blocks.", 0), ("mid_block.", 1), ("middle_block.", 1), ("up_blocks.", 2))


def ordered_cross_attention(unet: torch.nn.Module, latent_size: int, n_levels: int) -> list[LayerInfo]:
    """All ``attn2`` modules in forward order (down, mid, up; registration order inside a part,
    which is forward order there) with their query-grid side. Registration order alone is not
    forward order: diffusers registers ``up_blocks`` before ``mid_block``."""
    found = []
    for name, module in unet.named_modules():
        # attn2 is cross-attention by construction; attn1 only in blocks built with only_cross_attention
        if not (name.endswith(".attn2") or (name.endswith(".attn1") and getattr(module, "is_cross_attention", False))):
            continue
        part = next((rank for prefix, rank in _LEVEL_PREFIXES if name.startswith(prefix)), None)
        if part is None:
            raise ValueError(f"cross-attention layer {name!r} is outside down/mid/up blocks")
        if part == 1:
            level = n_levels - 1
        else:
            block = int(name.split(".")[1])
            level = block if part == 0 else n_levels - 1 - block
        found.append((part, len(found), name, latent_size // (2**level)))
    found.sort()
    return [LayerInfo(i, name, res) for i, (_, _, name, res) in enumerate(found)]


def match_batch(z: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Broadcast a scalar timestep and a single text context to the latent batch, so the engine can
    batch timesteps (one phrase) or phrases (one timestep) through the same U-Net call."""
    t = t.expand(z.shape[0]) if t.numel() == 1 else t
    if context.shape[0] == 1 and z.shape[0] > 1:
        context = context.expand(z.shape[0], -1, -1)
    return t, context
