"""The built-in vocabulary (package data ``lexicon.yaml``), read once.

Kept apart from `lexicon` so that the pattern compiler can fall back on the built-in degree adverbs and
copulas without importing the lexicon builder (which itself compiles patterns).
"""
from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Any

__all__ = ["BUILTIN_SOURCE", "DEFAULT_ADVERBS", "DEFAULT_BE", "builtin_data"]

BUILTIN_SOURCE = "groundkit/reports/lexicon.yaml"  # the name errors in the built-in vocabulary give


@lru_cache(maxsize=1)
def builtin_data() -> dict[str, Any]:
    """``lexicon.yaml`` as a mapping (trusted package data: no anchor check, no size limit)."""
    import yaml

    text = resources.files("groundkit.reports").joinpath("lexicon.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


# what ``ADV`` and ``BE`` stand for in a pattern compiled without a vocabulary at hand
DEFAULT_ADVERBS: tuple[str, ...] = tuple(builtin_data()["words"]["adverbs"])
DEFAULT_BE: tuple[str, ...] = tuple(builtin_data()["words"]["be"])
