"""A third-party model family, written against groundkit's Adapter protocol (no groundkit family code).

A one-level "U-Net": a convolution, one cross-attention layer over a whitespace tokenizer's embeddings, a
convolution back. Its checkpoint folder holds ``toy.json`` (sizes) and ``weights.safetensors``. Installed as a
package whose ``groundkit.adapters`` entry point names :class:`ToyAdapter` (pyproject.toml), as a real plugin is.
It subclasses :class:`~groundkit.core.adapter.AdapterBase` for the optional capabilities it does not have
(its unconditional embedding is the empty phrase's; it cannot ``compile``).
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from groundkit.core.adapter import AdapterBase, Component
from groundkit.core.geometry import square_crop
from groundkit.core.safeload import load_into, load_state_dict
from groundkit.core.types import LayerInfo, NoiseSchedule, TextBatch

VOCAB = ["[pad]", "[start]", "[end]", "[unk]", "left", "right", "small", "large", "pleural", "effusion",
         "pneumothorax", "cardiomegaly", "consolidation", "lower", "upper", "lobe", "the", "of", "apical", "opacity"]


class ToyNet(nn.Module):
    def __init__(self, channels: int = 8, dim: int = 16, tokens: int = 8):
        super().__init__()
        self.embed = nn.Embedding(len(VOCAB), dim)
        self.pos = nn.Parameter(torch.zeros(tokens, dim))
        self.conv_in = nn.Conv2d(1, channels, 3, padding=1, stride=2)
        self.q, self.k, self.v = nn.Linear(channels, dim), nn.Linear(dim, dim), nn.Linear(dim, channels)
        self.time = nn.Linear(1, channels)
        self.conv_out = nn.ConvTranspose2d(channels, 1, 4, stride=2, padding=1)
        self.sink = None  # set while capturing

    def attend(self, h: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, c, hh, ww = h.shape
        x = h.flatten(2).transpose(1, 2)  # (B, HW, C)
        scores = self.q(x) @ self.k(context).transpose(1, 2) / self.q.out_features ** 0.5
        probs = scores.float().softmax(-1)
        if self.sink is not None:
            self.sink.record("attn", probs[:, None])  # one head
        return h + (probs @ self.v(context)).transpose(1, 2).reshape(b, c, hh, ww)

    def forward(self, z, t, context):
        h = torch.relu(self.conv_in(z) + self.time(t.float()[:, None] / 1000.0)[:, :, None, None])
        return self.conv_out(self.attend(h, context))


class ToyAdapter(AdapterBase):
    name: ClassVar[str] = "toy-family"
    default_recipe: ClassVar[str] = "nuetzel2025-fast"
    options: ClassVar[dict[str, str]] = {"image_size": "side of the square model input (default 32)"}

    def __init__(self, net: ToyNet, image_size: int, device, dtype):
        self.net, self.image_size = net.to(device).eval(), image_size
        self.device, self.dtype = torch.device(device), dtype
        self.latent_size, self.latent_channels, self.n_tokens = image_size, 1, net.pos.shape[0]
        abar = torch.cumprod(1 - torch.linspace(1e-4, 2e-2, 1000, dtype=torch.float64), 0)
        self.schedule = NoiseSchedule(abar, "epsilon", float(abar[0]))

    @classmethod
    def detect(cls, path) -> bool:
        return (Path(path) / "toy.json").is_file()

    @classmethod
    def components(cls, entry: dict[str, Any]) -> list[Component]:
        root = Path(entry["path"])
        cfg = root / "toy.json"
        return [Component("toy config", (cfg,), "config", "build it with groundkit_toy_family.build"),
                Component("toy network", (root / "weights.safetensors",), "weights", "build it with groundkit_toy_family.build",
                          build=lambda keys: _on_meta(cfg))]

    @classmethod
    def from_entry(cls, entry: dict[str, Any], device="cpu", dtype=torch.float32) -> ToyAdapter:
        root = Path(entry["path"])
        net = ToyNet(**json.loads((root / "toy.json").read_text()))
        load_into(net, load_state_dict(root / "weights.safetensors"), root / "weights.safetensors", what="the toy network")
        return cls(net, int(entry.get("image_size", 32)), device, dtype)

    def preprocess(self, image):
        return square_crop(torch.as_tensor(image, dtype=torch.float32), self.image_size)

    @torch.no_grad()
    def encode_posterior(self, pixels):
        return pixels.to(self.device) * 2 - 1, None

    @torch.no_grad()
    def encode_text(self, phrases: list[str]) -> TextBatch:
        ids, tokens, word_ids, spans = [], [], [], []
        for phrase in phrases:
            words, pos, sp = [], 0, []
            for w in phrase.split():
                start = phrase.index(w, pos)
                sp.append((start, start + len(w)))
                pos = start + len(w)
                words.append(w.lower())
            words = words[: self.n_tokens - 2]
            toks = ["[start]"] + words + ["[end]"] + ["[pad]"] * (self.n_tokens - 2 - len(words))
            ids.append([VOCAB.index(t) if t in VOCAB else VOCAB.index("[unk]") for t in toks])
            tokens.append(toks)
            word_ids.append([None] + list(range(len(words))) + [None] * (self.n_tokens - 1 - len(words)))
            spans.append(sp[: len(words)])
        x = self.net.embed(torch.tensor(ids, device=self.device)) + self.net.pos
        special = torch.tensor([[w is None for w in wid] for wid in word_ids])
        return TextBatch(list(phrases), x.to(self.dtype), tokens, word_ids, spans, special, start_index=0)

    @torch.no_grad()
    def unet(self, z, t, context):
        t = t.expand(z.shape[0]) if t.numel() == 1 else t
        context = context.expand(z.shape[0], -1, -1) if context.shape[0] == 1 else context
        return self.net(z.to(self.dtype), t, context.to(self.dtype))

    def cross_attention_layers(self) -> list[LayerInfo]:
        return [LayerInfo(0, "attn", self.image_size // 2, "mid")]

    @contextmanager
    def capture(self, sink):
        self.net.sink = sink
        try:
            yield sink
        finally:
            self.net.sink = None

    def networks(self) -> dict[str, nn.Module]:
        return {"unet": self.net}


def _on_meta(cfg: Path) -> nn.Module:
    with torch.device("meta"):
        return ToyNet(**json.loads(cfg.read_text()))
