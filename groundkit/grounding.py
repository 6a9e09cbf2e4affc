"""The result of grounding one phrase: maps in crop space and original pixels, and its provenance."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from groundkit.core.geometry import Geometry, mask_to_original, to_original
from groundkit.core.outdir import check_targets, write_json, write_npy, write_png
from groundkit.recipes import Recipe

OUTPUT_FILES = ("heatmap.npy", "mask.png", "overlay.png", "tokens.png", "result.json")  # what save() may write


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
    boxes: list[tuple[float, float, float, float]] | None = None  # ground truth given to evaluate()
    metrics: dict[str, float] | None = None  # what evaluate() returned (saved in result.json)

    def __repr__(self) -> str:
        s = self.info.get("timings", {}).get("total_seconds_batch")
        extra = f", {self.metrics_summary()}" if self.metrics else ""
        return (f"Grounding({self.phrase!r}, {self.info.get('checkpoint', '?')}/{self.recipe.name}, "
                f"{self.geometry.orig_h}x{self.geometry.orig_w}, mask {self.mask_crop.mean():.1%}"
                + (f", {self.info.get('unet_calls', 0):g} U-Net calls" if "unet_calls" in self.info else "")
                + (f", {s:.2f} s" if s is not None else "")
                + (f", confidence {self.confidence:.2f}" if self.confidence is not None else "")
                + ("" if self.localised else ", not localised") + extra + ")")

    def metrics_summary(self) -> str:
        return ", ".join(f"{k} {v:.3f}" for k, v in (self.metrics or {}).items() if not k.startswith("n_boxes"))

    @property
    def signals(self) -> dict[str, float]:
        """Label-free quality signals of this map (groundkit.engine.confidence, docs/confidence.md)."""
        return dict(self.info.get("signals") or {})

    @property
    def confidence(self) -> float | None:
        """P(IoU of the mask with the true region >= 0.3) from the checkpoint's calibration of this recipe; None
        when uncalibrated (``info["confidence"]`` says why, or where the calibration came from)."""
        c = self.info.get("confidence")
        return c.get("value") if isinstance(c, dict) else None

    @property
    def localised(self) -> bool:
        """False when ``min_confidence`` abstained: the finding is listed, its mask is not drawn."""
        return bool(self.info.get("localised", True))

    @property
    def heatmap(self) -> np.ndarray:
        """(H, W) in original pixels, NaN where the center crop cut the image."""
        return to_original(self.heatmap_crop, self.geometry)

    @property
    def mask(self) -> np.ndarray:
        """(H, W) bool in original pixels; False outside the field of view, and everywhere when not localised
        (``min_confidence`` abstained; ``mask_crop`` keeps the thresholded map)."""
        m = mask_to_original(self.mask_crop, self.geometry)
        return m if self.localised else np.zeros_like(m)

    @property
    def token_maps(self) -> dict[str, np.ndarray] | None:
        if self.token_maps_crop is None:
            return None
        return {w: to_original(m, self.geometry) for w, m in self.token_maps_crop.items()}

    def evaluate(self, boxes, protocol: str | None = None) -> dict[str, float]:
        """Metrics of this grounding against [x, y, w, h] boxes in original pixels, under the recipe's protocol
        (or the one named). The boxes and metrics are kept: ``save`` records them and draws the boxes."""
        from groundkit.evaluation.protocols import get_protocol

        metrics = get_protocol(protocol or self.recipe.protocol).evaluate(self.heatmap_crop, self.mask_crop, self.geometry, boxes)
        self.boxes, self.metrics = [tuple(map(float, b)) for b in boxes], dict(metrics)
        return metrics

    def plot(self, ax=None, *, mask: bool = True, boxes: bool = True):
        """Draw the overlay (image, heatmap with a labelled colour bar, mask contour, ground-truth boxes, patient
        L/R) into a matplotlib axis (a new figure when ``ax`` is None); returns the axis."""
        from groundkit import viz

        return viz.plot_grounding(self, ax=ax, mask=mask, boxes=boxes)

    def show(self, **kwargs) -> None:
        """Plot and show (in a notebook, the figure appears inline)."""
        import matplotlib.pyplot as plt

        self.plot(**kwargs)
        plt.show()

    def to_json(self) -> dict[str, Any]:
        return {"phrase": self.phrase, "recipe": self.recipe.to_dict(), "recipe_digest": self.recipe.digest(),
                "geometry": vars(self.geometry), **self.info}

    def save(self, out_dir: str | Path, boxes=None) -> Path:
        """heatmap.npy (original size, NaN outside the field of view), mask.png, overlay.png,
        result.json; token maps as tokens.png when present."""
        from groundkit import viz

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        check_targets(out, OUTPUT_FILES)  # refuse a planted link before anything is written
        heat = self.heatmap
        write_npy(out / "heatmap.npy", heat.astype(np.float32))
        write_png(out / "mask.png", self.mask.astype(np.uint8) * 255)
        if boxes is not None:
            self.evaluate(boxes)
        result = self.to_json()
        if self.boxes is not None:
            result["boxes"] = [list(b) for b in self.boxes]
            result["metrics"] = self.metrics
        if self.image is not None:
            viz.overlay(self.image, heat, mask=self.mask, boxes=self.boxes, title=self.phrase, path=out / "overlay.png",
                        sides=True, colorbar_label=f"cross-attention ({self.recipe.name}, min-max)")
            if self.token_maps_crop:
                viz.token_grid(self.image, self.token_maps, out / "tokens.png")
        write_json(out / "result.json", result)
        return out
