"""The shared vocabulary of groundkit: cross-attention layers, encoded phrases, noise schedules.

Model families produce these, the engine consumes them; nothing here depends on a particular family.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # annotations only: `import groundkit` must not pay for importing torch
    import torch


@dataclass(frozen=True)
class LayerInfo:
    """One cross-attention layer, in canonical (forward) order."""

    index: int
    name: str  # module path inside the U-Net, e.g. "down_blocks.1.attentions.0.transformer_blocks.0.attn2"
    resolution: int  # query grid side (maps are resolution x resolution, row-major)
    block: str = ""  # U-Net part: "down", "mid" or "up" (what portable recipes select by)
    # which attention of its transformer block: "attn2", the block's cross-attention (what a family's ordinary
    # cross-attention layers are, and what published code hooks), or "attn1", the first attention of a block built
    # with only_cross_attention, which then attends to the text too; recipes select by it ("attn2")
    attention: str = "attn2"


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


class AttentionSink(Protocol):
    """What a family's capture hook reports to. ``layers`` names the cross-attention layers to hook (module
    path -> LayerInfo); ``record`` receives one layer's post-softmax attention, (batch, heads, query pixels,
    tokens), which the engine's recorder reduces on the fly."""

    layers: Mapping[str, LayerInfo]

    def record(self, name: str, probs: torch.Tensor) -> None: ...

