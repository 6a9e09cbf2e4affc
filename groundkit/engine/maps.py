"""Captured attention of one phrase, and its aggregation over a window (docs/protocols.md §5).

`AttentionMaps` holds, per layer, a (steps, groups, h, w) tensor: token groups were already
reduced during capture (selected tokens, start token, per-word maps). Aggregation over a window
only averages; it never calls the U-Net, so an ablation can re-aggregate the same capture.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from groundkit.core.types import LayerInfo


@dataclass
class AttentionMaps:
    layers: list[LayerInfo]  # layers present (canonical indices)
    steps: list[int]  # grid indices present, in run order
    groups: list[str]  # names of the token groups, e.g. ["selected", "start", "word:edema"]
    maps: dict[int, torch.Tensor]  # layer index -> (len(steps), len(groups), h, w) float32

    def window(self, steps: tuple[int, int] | list[int], layers: tuple[int, ...] | None) -> tuple[list[int], list[LayerInfo]]:
        """Positions of the window's steps and the window's layers; errors name what is missing."""
        wanted = list(range(*steps)) if isinstance(steps, tuple) else list(steps)
        pos = {s: i for i, s in enumerate(self.steps)}
        missing = [s for s in wanted if s not in pos]
        if missing:
            raise ValueError(f"steps {missing[:5]} were not captured (captured {self.steps[0]}..{self.steps[-1]})")
        by_index = {info.index: info for info in self.layers}
        chosen = sorted(by_index) if layers is None else list(layers)
        absent = [i for i in chosen if i not in by_index]
        if absent:
            raise ValueError(f"layers {absent} were not captured (captured {sorted(by_index)})")
        return [pos[s] for s in wanted], [by_index[i] for i in chosen]

    def stack(self, group: str, steps, layers, size: int) -> torch.Tensor:
        """(steps, layers, size, size) maps of one group, nearest-upsampled (for BBM's products)."""
        gi = self.groups.index(group)
        pos, infos = self.window(steps, layers)
        idx = torch.tensor(pos)
        per_layer = [F.interpolate(self.maps[info.index][idx, gi][:, None], size=(size, size), mode="nearest")[:, 0] for info in infos]
        return torch.stack(per_layer, dim=1)

    def aggregate(self, group: str, steps, layers, *, layer_norm: bool, upsample: str, size: int) -> np.ndarray:
        """Mean over the window of one group's maps on a size x size grid (float64).

        ``layer_norm`` min-maxes every (step, layer) map first (Vilouras). Upsampling is linear,
        so maps are averaged per resolution and each resolution's mean is upsampled once:
        identical to upsampling every map, at a fraction of the cost."""
        gi = self.groups.index(group)
        pos, infos = self.window(steps, layers)
        idx = torch.tensor(pos)
        by_res: dict[int, list[torch.Tensor]] = {}
        for info in infos:
            m = self.maps[info.index][idx, gi].double()  # (S, h, w)
            if layer_norm:
                lo = m.amin(dim=(1, 2), keepdim=True)
                hi = m.amax(dim=(1, 2), keepdim=True)
                m = (m - lo) / torch.where(hi > lo, hi - lo, torch.ones_like(hi))
            by_res.setdefault(info.resolution, []).append(m)
        total = sum(len(v) * len(pos) for v in by_res.values())
        acc = torch.zeros(size, size, dtype=torch.float64)
        for res, ms in by_res.items():
            mean = torch.stack(ms).mean(dim=(0, 1))  # (h, w)
            if res != size:
                kw = {"align_corners": False} if upsample == "bilinear" else {}
                mean = F.interpolate(mean[None, None], size=(size, size), mode=upsample, **kw)[0, 0]
            acc += mean * (len(ms) * len(pos) / total)
        return acc.numpy()
