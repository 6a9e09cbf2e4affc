"""A third party's metric protocol in one file (declared under the groundkit.protocols entry point): is the map's
peak inside a box, and how much of the crop the mask covers."""
import math
from dataclasses import dataclass

import numpy as np

from groundkit.evaluation.metrics import top1
from groundkit.evaluation.protocols import MetricProtocol, split_boxes_by_crop


@dataclass(frozen=True)
class HitRate(MetricProtocol):
    name: str = "hit-rate"
    metrics: tuple = ("hit", "mask_fraction")

    def evaluate(self, heatmap_crop, mask_crop, geometry, boxes):
        kept, crop = split_boxes_by_crop(boxes, geometry)
        out = {"n_boxes": float(len(kept)), "n_boxes_dropped": float(len(boxes) - len(kept))}
        if not crop:
            return {**out, "hit": math.nan, "mask_fraction": math.nan}
        return {**out, "hit": top1(heatmap_crop, crop), "mask_fraction": float(np.mean(mask_crop))}
