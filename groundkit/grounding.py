"""The result of grounding one phrase: maps in crop space and original pixels, and its provenance."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .geometry import Geometry
from .postprocess import mask_to_original, to_original
from .recipes import Recipe


@dataclass
class Grounding:
    phrase: str
    heatmap_crop: np.ndarray  # (S, S) in [0, 1]: the recipe's output map in the model's crop space
    mask_crop: np.ndarray  # (S, S) bool
    geometry: Geometry
    recipe: Recipe
    info: dict[str, Any] = field(default_factory=dict)  # checkpoint, seed, timings, U-Net calls, tokens ...
    token_maps_crop: dict[str, np.ndarray] | None = None  # per-word maps (crop space), on request
    image: np.ndarray | None = None  # the original image (H, W) in [0, 1], for overlays

    @property
    def heatmap(self) -> np.ndarray:
        """(H, W) in original pixels, NaN where the center crop cut the image."""
        return to_original(self.heatmap_crop, self.geometry)

    @property
    def mask(self) -> np.ndarray:
        """(H, W) bool in original pixels; False outside the field of view."""
        return mask_to_original(self.mask_crop, self.geometry)

    @property
    def token_maps(self) -> dict[str, np.ndarray] | None:
        if self.token_maps_crop is None:
            return None
        return {w: to_original(m, self.geometry) for w, m in self.token_maps_crop.items()}

    def evaluate(self, boxes, protocol: str | None = None) -> dict[str, float]:
        """Metrics of this grounding against [x, y, w, h] boxes in original pixels, under the
        recipe's protocol (or the one named)."""
        from .protocols import get_protocol

        return get_protocol(protocol or self.recipe.protocol).evaluate(self.heatmap_crop, self.mask_crop, self.geometry, boxes)

    def to_json(self) -> dict[str, Any]:
        return {"phrase": self.phrase, "recipe": self.recipe.to_dict(), "recipe_digest": self.recipe.digest(),
                "geometry": vars(self.geometry), **self.info}

    def save(self, out_dir: str | Path, boxes=None) -> Path:
        """heatmap.npy (original size, NaN outside the field of view), mask.png, overlay.png,
        result.json; token maps as tokens.png when present."""
        from PIL import Image

        from . import viz

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        heat = self.heatmap
        np.save(out / "heatmap.npy", heat.astype(np.float32))
        Image.fromarray((self.mask.astype(np.uint8) * 255)).save(out / "mask.png")
        result = self.to_json()
        if boxes is not None:
            result["boxes"] = [list(map(float, b)) for b in boxes]
            result["metrics"] = self.evaluate(boxes)
        if self.image is not None:
            viz.overlay(self.image, heat, mask=self.mask, boxes=boxes, title=self.phrase, path=out / "overlay.png")
            if self.token_maps_crop:
                viz.token_grid(self.image, self.token_maps, out / "tokens.png")
        (out / "result.json").write_text(json.dumps(result, indent=2, default=_jsonable))
        return out


def _jsonable(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
