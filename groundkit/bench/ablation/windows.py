"""Layer and timestep windows of an ablation grid: parsing, labels, the cost formula, and a cell."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from groundkit.recipes import parse_layers

STORE_VERSION = 1
GROUP = "selected"
METRIC_ALIASES = {"miou_thresholds": "miou_thr", "miou_threshold": "miou_thr"}



def parse_layers_grid(text: str | Sequence) -> list[tuple[int, ...] | None]:
    """'all;3,4,6,7;2-7' -> [None, (3, 4, 6, 7), (2, ..., 7)] (a list of such items passes through)."""
    items = text.split(";") if isinstance(text, str) else list(text)
    out = []
    for item in items:
        w = parse_layers(item) if isinstance(item, str) else (None if item is None else tuple(sorted(int(i) for i in item)))
        if w not in out:
            out.append(w)
    if not out:
        raise ValueError("layers grid: no window given")
    return out


def parse_timesteps_grid(text: str | Sequence) -> list[tuple[int, int]]:
    """'0:100;40:60;30:70' -> windows [start, end). An item 'a:b:k' expands to every contiguous window
    with start and end on the lattice a, a+k, ..., b (for the (start, end) plot)."""
    items = text.split(";") if isinstance(text, str) else list(text)
    out: list[tuple[int, int]] = []
    for item in items:
        if isinstance(item, str):
            parts = item.strip().split(":")
            try:
                nums = [int(p) for p in parts]
            except ValueError:
                raise ValueError(f"timesteps grid: expected START:END or START:END:STRIDE, got {item!r}") from None
            if len(nums) == 2:
                ws = [tuple(nums)]
            elif len(nums) == 3 and nums[2] > 0:
                lattice = list(range(nums[0], nums[1] + 1, nums[2]))
                ws = [(a, b) for a in lattice for b in lattice if a < b]
            else:
                raise ValueError(f"timesteps grid: expected START:END or START:END:STRIDE, got {item!r}")
        else:
            ws = [tuple(int(v) for v in item)]
        for w in ws:
            if len(w) != 2 or not 0 <= w[0] < w[1]:
                raise ValueError(f"timesteps grid: expected 0 <= start < end, got {w}")
            if w not in out:
                out.append(w)
    if not out:
        raise ValueError("timesteps grid: no window given")
    return out


def last_n_windows(ns: Sequence[int], n_grid: int) -> list[tuple[int, int]]:
    """Nuetzel's last-n-steps windows (n_grid - n, n_grid) of a sampling grid of n_grid steps."""
    out = []
    for n in ns:
        if not 1 <= int(n) <= n_grid:
            raise ValueError(f"last-n: n={n} outside 1..{n_grid} (the grid has {n_grid} steps)")
        out.append((n_grid - int(n), n_grid))
    return out


def layers_label(w) -> str:
    """None -> 'all'; runs of 3+ consecutive indices as a-b: (2..7) -> '2-7', (3,4,6,7) -> '3,4,6,7'."""
    if w is None:
        return "all"
    w = sorted(w)
    parts, i = [], 0
    while i < len(w):
        j = i
        while j + 1 < len(w) and w[j + 1] == w[j] + 1:
            j += 1
        parts.append(f"{w[i]}-{w[j]}" if j - i >= 2 else ",".join(str(v) for v in w[i : j + 1]))
        i = j + 1
    return ",".join(parts)


def steps_label(w) -> str:
    return f"{w[0]}:{w[1]}"


def window_cost(mode: str, window: tuple[int, int], n_phrases: int) -> int:
    """U-Net calls to ground n_phrases of one image with grid window [a, b) from scratch (the engine's
    counting: gt-noised P(b-a); ddim-inversion (b-1) unconditional + P(b-a) conditional)."""
    a, b = window
    if mode == "gt-noised":
        return n_phrases * (b - a)
    if mode == "ddim-inversion":
        return (b - 1) + n_phrases * (b - a)
    raise ValueError(f"unknown mode {mode!r}")


@dataclass(frozen=True)
class Cell:
    """One evaluated combination: layer window x timestep window x post-processing (threshold)."""

    layers: tuple[int, ...] | None
    steps: tuple[int, int]
    post: str

    @property
    def key(self) -> str:
        return f"{layers_label(self.layers)}|{steps_label(self.steps)}|{self.post}"

    def to_dict(self) -> dict[str, str]:
        return {"layers": layers_label(self.layers), "steps": steps_label(self.steps), "post": self.post}
