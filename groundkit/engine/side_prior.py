"""Side prior: the report's own side words ("left pleural effusion") as a soft spatial weight on the finding's map.

The demo model's attention barely encodes side: "left" and "right" spread their attention over both halves of
the image alike (docs/report-grounding.md), so two findings of the same kind on opposite sides, or a finding
next to a more salient one on the other side, cannot be told apart from attention alone. The report names the
side, and the parser reads it (``Finding.side``: left / right / bilateral / None). This module turns that
word into a weight over the image columns, used by the report flow only (``ground_report(side_prior=True)``,
the default there; single-phrase ``ground`` and ``ground_many`` never apply it).

Geometry: chest X-rays are displayed in the radiological convention (PA or AP, patient facing the viewer), so
the patient's RIGHT is the image's LEFT half. The weight is 1 on the stated side beyond a ramp around the
vertical midline, falls linearly across the ramp (lungs, effusions and the heart reach over the midline) and
keeps ``floor`` on the other side, so a strong region there is damped, not erased. "bilateral" or no side: no
weight (the map is the recipe's own). Chosen on validation seeds only: ``floor`` 0.3, ``ramp`` 0.2 of the
image width.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["SIDE_FLOOR", "SIDE_RAMP", "SIDES", "side_weight", "describe", "check_side_prior"]

SIDE_FLOOR = 0.3
SIDE_RAMP = 0.2
SIDES = ("left", "right")  # the sides that give a weight; "bilateral" and None do not


def side_weight(side: str | None, size: int, floor: float = SIDE_FLOOR, ramp: float = SIDE_RAMP) -> np.ndarray | None:
    """(size, size) weight for a finding on the patient's ``side`` (image left = patient's right), or ``None``
    when the side gives no position ("bilateral", None)."""
    if side not in SIDES:
        return None
    if not 0.0 <= floor <= 1.0:
        raise ValueError(f"floor must be in [0, 1] (got {floor})")
    if ramp <= 0:
        raise ValueError(f"ramp must be > 0 (got {ramp})")
    x = (np.arange(size) + 0.5) / size - 0.5  # column centre, -0.5 (image left) .. 0.5 (image right)
    towards = x if side == "left" else -x  # patient's left = image right
    w = floor + (1.0 - floor) * np.clip(0.5 + towards / ramp, 0.0, 1.0)
    return np.tile(w, (size, 1))


def describe(on: bool, sides: Sequence[str | None]) -> dict[str, Any]:
    """What result.json / findings.json record about the side prior of one report grounding."""
    d: dict[str, Any] = {"on": bool(on), "findings_weighted": int(on) * sum(s in SIDES for s in sides)}
    if on:
        d.update({"convention": "patient's right = image left (PA/AP display)", "floor": SIDE_FLOOR, "ramp": SIDE_RAMP})
    return d


def check_side_prior(value: Any) -> bool:
    """``side_prior`` must be a bool (a typo such as "off" would otherwise read as on)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"side_prior={value!r}: expected True or False")
    return bool(value)
