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

Zone: the report's vertical words ("upper lobe", "apical", "base", "RLL", "mid zone"; ``Finding.location``) give
the same kind of weight over the image ROWS, multiplied with the side's: two findings on the same side (a
consolidation of the upper lobe, a pneumonia at the base) are then told apart by height. Upper: 1 above 45 %
of the image height, down to ``floor`` by 65 %; lower: 1 below 50 %, down to ``floor`` by 30 %; middle: 1 from
39 % to 55 %, down to ``floor`` at 19 % and 75 %. A finding whose words name several zones, or none, gets no
zone weight. Same floor and ramp as the side; checked on validation seeds only (7 and 8: benchmarks/
report_grounding.py), never on the held-out seed.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["SIDE_FLOOR", "SIDE_RAMP", "SIDES", "ZONES", "side_weight", "zone_of", "zone_weight", "position_weight", "describe",
           "check_side_prior"]

SIDE_FLOOR = 0.3
SIDE_RAMP = 0.2
SIDES = ("left", "right")  # the sides that give a weight; "bilateral" and None do not
ZONES = ("upper", "middle", "lower")
# the parser's normalised locations (Finding.location: "RUL" -> "upper lobe", "basilar" -> "base") -> the zone
_ZONE_OF_LOCATION = {"upper lobe": "upper", "upper zone": "upper", "apex": "upper",
                     "middle lobe": "middle", "middle zone": "middle", "perihilar": "middle", "hilum": "middle",
                     "lingula": "middle", "lower lobe": "lower", "lower zone": "lower", "base": "lower",
                     "costophrenic angle": "lower", "retrocardiac": "lower", "infrahilar": "lower"}
# rows (fraction of the image height) where each zone's weight is at its middle (0.5 of the ramp)
_ZONE_EDGES = {"upper": (None, 0.55), "middle": (0.29, 0.65), "lower": (0.40, None)}


def _check(floor: float, ramp: float) -> None:
    if not 0.0 <= floor <= 1.0:
        raise ValueError(f"floor must be in [0, 1] (got {floor})")
    if ramp <= 0:
        raise ValueError(f"ramp must be > 0 (got {ramp})")


def side_weight(side: str | None, size: int, floor: float = SIDE_FLOOR, ramp: float = SIDE_RAMP) -> np.ndarray | None:
    """(size, size) weight for a finding on the patient's ``side`` (image left = patient's right), or ``None``
    when the side gives no position ("bilateral", None)."""
    if side not in SIDES:
        return None
    _check(floor, ramp)
    x = (np.arange(size) + 0.5) / size - 0.5  # column centre, -0.5 (image left) .. 0.5 (image right)
    towards = x if side == "left" else -x  # patient's left = image right
    w = floor + (1.0 - floor) * np.clip(0.5 + towards / ramp, 0.0, 1.0)
    return np.tile(w, (size, 1))


def zone_of(locations: Sequence[str]) -> str | None:
    """The one zone ("upper", "middle", "lower") that a finding's normalised locations (``Finding.location``)
    name, else None (none, or several). Reading the parser's normalised form keeps the word list in one place
    (the lexicon): "RUL", "apical", "costophrenic" arrive as "upper lobe", "apex", "costophrenic angle"."""
    named = {_ZONE_OF_LOCATION.get(str(loc).lower()) for loc in locations} - {None}
    return named.pop() if len(named) == 1 else None


def zone_weight(zone: str | None, size: int, floor: float = SIDE_FLOOR, ramp: float = SIDE_RAMP) -> np.ndarray | None:
    """(size, size) weight over the rows for a finding in ``zone`` (see the module's docstring), or ``None``."""
    if zone not in ZONES:
        return None
    _check(floor, ramp)
    y = (np.arange(size) + 0.5) / size  # row centre, 0 (top) .. 1 (bottom)
    top, bottom = _ZONE_EDGES[zone]
    t = np.ones(size)
    if top is not None:
        t = np.minimum(t, np.clip(0.5 + (y - top) / ramp, 0.0, 1.0))
    if bottom is not None:
        t = np.minimum(t, np.clip(0.5 + (bottom - y) / ramp, 0.0, 1.0))
    w = floor + (1.0 - floor) * t
    return np.tile(w[:, None], (1, size))


def position_weight(side: str | None, zone: str | None, size: int) -> np.ndarray | None:
    """The side weight times the zone weight; ``None`` when neither gives a position."""
    ws = [w for w in (side_weight(side, size), zone_weight(zone, size)) if w is not None]
    return None if not ws else ws[0] if len(ws) == 1 else ws[0] * ws[1]


def describe(on: bool, sides: Sequence[str | None], zones: Sequence[str | None] = ()) -> dict[str, Any]:
    """What result.json / findings.json record about the side prior of one report grounding."""
    zones = list(zones) + [None] * (len(sides) - len(zones))
    weighted = sum(s in SIDES or z in ZONES for s, z in zip(sides, zones))
    d: dict[str, Any] = {"on": bool(on), "findings_weighted": int(on) * weighted}
    if on:
        d.update({"convention": "patient's right = image left (PA/AP display)", "floor": SIDE_FLOOR, "ramp": SIDE_RAMP,
                  "zones": "upper / middle / lower words weight the rows as the side weights the columns"})
    return d


def check_side_prior(value: Any) -> bool:
    """``side_prior`` must be a bool (a typo such as "off" would otherwise read as on)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"side_prior={value!r}: expected True or False")
    return bool(value)
