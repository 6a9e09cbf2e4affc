"""A whole radiology report grounded in one image: every positive finding's Grounding, the negated ones listed.

`GroundingModel.ground_report` parses the report (``groundkit.reports``), grounds all positive findings in
ONE batched call that shares the per-image work (the image latent, the unconditional inversion trajectory,
the GT-noised latents) and returns a :class:`ReportGrounding`: ``save(dir)`` writes ``findings.json``, one
heatmap ``.npy`` and mask ``.png`` per grounded finding, an overlay of every contour and ``report.html``
(self-contained, works from file://).

With several positive findings each finding's map is computed against the others' (``contrast="findings"``,
the default: groundkit.engine.contrast, docs/report-grounding.md); findings.json records it under ``contrast``.
The overlay and the page outline every finding in its own colour (never filled), at least 512 px on the long
side; heatmaps and masks keep the model's geometry.
"""
from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from groundkit.core.io import clean_json
from groundkit.core.outdir import check_target, write_json, write_npy, write_png, write_text
from groundkit.grounding import Grounding
from groundkit.reports.parse import Finding, ParsedReport

# distinct colours (Kelly / Sasha Trubetskoy), readable on a grey X-ray
PALETTE = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c", "#fabebe",
           "#008080", "#e6beff", "#9a6324", "#fffac8", "#800000", "#aaffc3", "#808000")


@dataclass
class GroundedFinding:
    finding: Finding
    color: str
    grounding: Grounding | None = None  # None: negated (listed, not grounded)

    @property
    def negated(self) -> bool:
        return self.finding.negated

    def to_dict(self, index: int) -> dict[str, Any]:
        f = self.finding
        d = {"id": f"f{index}", "phrase": f.phrase, "category": f.category, "observation": f.observation,
             "laterality": f.laterality, "zones": list(f.zones), "modifiers": list(f.modifiers), "negated": f.negated,
             "uncertain": f.uncertain, "cue": f.negation_cue or f.uncertainty_cue, "color": self.color,
             "mentions": [{"start": m.start, "end": m.end, "text": m.text, "sentence": m.sentence, "section": m.section}
                          for m in f.mentions]}
        if self.grounding is not None:
            g = self.grounding
            d.update({"heatmap": f"finding_{index}_heatmap.npy", "mask": f"finding_{index}_mask.png",
                      "unet_calls": g.info.get("unet_calls"), "tokens": g.info.get("tokens", {}).get("summary"),
                      "mask_fraction": float(g.mask_crop.mean()), "metrics": g.metrics, "confidence": g.confidence,
                      "confidence_info": g.info.get("confidence"), "signals": g.info.get("signals"),
                      "localised": g.localised})
        return d


@dataclass
class ReportGrounding:
    text: str
    parsed: ParsedReport
    findings: list[GroundedFinding]
    image: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def positive(self) -> list[GroundedFinding]:
        return [f for f in self.findings if f.grounding is not None]

    @property
    def negated(self) -> list[GroundedFinding]:
        return [f for f in self.findings if f.grounding is None]

    def __repr__(self) -> str:
        return (f"ReportGrounding({len(self.positive)} grounded, {len(self.negated)} negated; "
                + "; ".join(f"{f.finding.phrase!r}{' (negated)' if f.negated else ''}" for f in self.findings) + ")")

    def to_dict(self) -> dict[str, Any]:
        return {"report": self.text, "sentence_backend": self.parsed.sentence_backend,
                "findings": [f.to_dict(i) for i, f in enumerate(self.findings)], **self.info}

    def save(self, out_dir: str | Path) -> Path:
        """findings.json, finding_<i>_heatmap.npy (original size, NaN outside the view), finding_<i>_mask.png,
        overlay.png (every contour in its finding's colour) and report.html."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        names = [f"finding_{i}_{k}" for i, f in enumerate(self.findings) if f.grounding is not None
                 for k in ("heatmap.npy", "mask.png")]
        for name in names + ["overlay.png", "findings.json", "report.html"]:
            check_target(out / name)  # refuse a planted link before anything is written
        for i, f in enumerate(self.findings):
            if f.grounding is not None:
                write_npy(out / f"finding_{i}_heatmap.npy", f.grounding.heatmap.astype(np.float32))
                write_png(out / f"finding_{i}_mask.png", f.grounding.mask.astype(np.uint8) * 255)
        write_png(out / "overlay.png", self._overlay())
        write_json(out / "findings.json", self.to_dict())
        write_text(out / "report.html", self.to_html())
        return out

    def to_html(self) -> str:
        from groundkit.viz.overlay import outline_rgba, report_display_size
        from groundkit.viz.report_page import render_report_page

        h, w = self.image.shape
        display = report_display_size(h, w)
        data = {"title": "groundkit: report grounding", "image_png": _png(_gray_rgb(self.image)), "width": w, "height": h,
                "report": self.text, "findings": [], "footer": _footer(self.info),
                "min_confidence": next((f.grounding.info.get("min_confidence") for f in self.positive
                                        if "min_confidence" in f.grounding.info), None)}
        for i, f in enumerate(self.findings):
            d = f.to_dict(i)
            g = f.grounding
            drawn = g is not None and g.localised
            data["findings"].append({
                "id": d["id"], "label": f.finding.phrase, "category": f.finding.category, "color": f.color,
                "negated": f.negated, "uncertain": f.finding.uncertain, "cue": d["cue"],
                "mentions": [{"start": m["start"], "end": m["end"]} for m in d["mentions"]],
                "heatmap_png": _png(_heat_rgba(g.heatmap)) if drawn else None,
                # the outline drawn at display size (>= 512 px long side), the mask at the model's geometry
                "contour_png": _png(outline_rgba(g.mask, f.color, display)) if drawn else None,
                "mask_png": _png(_mask_rgba(g.mask, f.color)) if drawn else None,
                "metrics": clean_json(g.metrics) if g is not None and g.metrics else None,
                "confidence": g.confidence if g is not None else None, "localised": g.localised if g is not None else True,
                "confidence_note": (g.info.get("confidence") or {}).get("status") if g is not None else None})
        return render_report_page(data)

    def _overlay(self) -> np.ndarray:
        """Every grounded finding's mask outlined in its colour (never filled: no finding hides another) on the
        image enlarged to at least 512 px on its long side, with a legend strip naming each colour."""
        from groundkit.viz.overlay import report_overlay

        pos = [f for f in self.positive if f.grounding.localised]  # not-localised findings: nothing drawn
        return report_overlay(self.image, [f.grounding.mask for f in pos], [f.color for f in pos],
                              [f"{f.finding.phrase} ({f.finding.category})" for f in pos])


# ---------------------------------------------------------------------------------------------------
# pictures for the page
def _png(a: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _gray_rgb(image: np.ndarray) -> np.ndarray:
    g = (np.clip(np.nan_to_num(image), 0, 1) * 255).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=2)


def _heat_rgba(heatmap: np.ndarray, cmap: str = "inferno") -> np.ndarray:
    """The heatmap coloured, its alpha rising with the value (transparent at 0 and outside the view)."""
    from matplotlib import colormaps

    v = np.nan_to_num(heatmap, nan=0.0).clip(0, 1)
    rgba = colormaps[cmap](v)
    rgba[..., 3] = np.where(np.isfinite(heatmap), 0.25 + 0.75 * v, 0.0) * (v > 0.02)
    return (rgba * 255).astype(np.uint8)


def _mask_rgba(mask: np.ndarray, color: str, alpha: int = 70) -> np.ndarray:
    """The mask as a light tint of its finding's colour (the page shows it for the active finding only)."""
    m = np.asarray(mask, bool)
    out = np.zeros((*m.shape, 4), np.uint8)
    out[m, :3] = [int(color[i:i + 2], 16) for i in (1, 3, 5)]
    out[m, 3] = alpha
    return out


def _footer(info: dict[str, Any]) -> dict[str, Any]:
    keys = ("checkpoint", "recipe", "recipe_digest", "seconds", "unet_calls_total", "unet_calls_per_finding", "groundkit")
    out = {k: info[k] for k in keys if k in info}
    c = info.get("contrast")
    if isinstance(c, dict):
        out["contrast"] = c.get("mode", "none") + (" (between findings)" if c.get("applied") else
                                                     " (one finding: its own map)" if c.get("mode") == "findings" else "")
    sp = info.get("side_prior")
    if isinstance(sp, dict):
        out["side prior"] = (f"on ({sp.get('findings_weighted', 0)} finding(s) weighted towards their stated side)"
                             if sp.get("on") else "off")
    return out
