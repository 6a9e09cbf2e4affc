"""The eight MS-CXR categories and the one order groundkit shows them in.

Tables, charts, CSVs and reports all order categories with :func:`ordered` (the dataset's own order;
the papers' table layouts, which use their own column order, say so where they differ)."""
from __future__ import annotations

from collections.abc import Iterable

CATEGORIES: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Lung Opacity",
    "Pleural Effusion",
    "Pneumonia",
    "Pneumothorax",
)
# column orders of the published tables (kept so that a table reads like the paper's)
VILOURAS_ORDER = ("Pneumonia", "Pneumothorax", "Consolidation", "Atelectasis", "Edema", "Cardiomegaly",
                  "Lung Opacity", "Pleural Effusion")
NUETZEL_ORDER = ("Atelectasis", "Cardiomegaly", "Consolidation", "Lung Opacity", "Edema", "Pneumonia",
                 "Pneumothorax", "Pleural Effusion")


def ordered(categories: Iterable[str]) -> list[str]:
    """The given categories in CATEGORIES order, any others after them alphabetically (each once)."""
    present = set(categories)
    return [c for c in CATEGORIES if c in present] + sorted(c for c in present if c not in CATEGORIES)


def canonical(name: str) -> str | None:
    """The MS-CXR category a spelling means ("lung_opacity", "pleural effusion" ...), or None."""
    key = " ".join(name.replace("_", " ").replace("-", " ").lower().split())
    return next((c for c in CATEGORIES if c.lower() == key), None)
