"""Layer selectors: the language of a recipe's ``layers`` field, resolved per model (docs/recipes.md).

Why apart from the recipes: a selector names layers by what they are (resolution, U-Net part, which attention
of a transformer block), so one published recipe runs on every architecture; resolving it needs only the
model's :class:`~groundkit.core.types.LayerInfo` list. ``attn2`` is a block's cross-attention, what the
published code hooks; ``attn1`` is a block's first attention where the block was built with
``only_cross_attention`` and so attends to the text too. ``all`` (or no selector) means every text-attending
layer, both kinds.
"""
from __future__ import annotations

import re
from typing import Any, Sequence

from groundkit.core.bounds import MAX_LAYER_INDEX
from groundkit.core.types import LayerInfo
from groundkit.core.yamlfile import short as _short

__all__ = ["ATTENTIONS", "BLOCKS", "describe_layers", "layer_choice", "parse_layers", "resolve_layers"]

BLOCKS = ("down", "mid", "up")
ATTENTIONS = ("attn1", "attn2")  # LayerInfo.attention: which attention of a transformer block a layer is
_RES = re.compile(r"^(\d+)x(\d+)$")


def _selector_part(part: str) -> bool:
    m = _RES.match(part)
    return part in BLOCKS or part in ATTENTIONS or bool(m and m.group(1) == m.group(2))


def parse_layers(text: str) -> tuple[int, ...] | str | None:
    """'all' | '3,4,6,7' | '2-7' | '0-3,8' -> sorted unique indices (None = all); a selector ('16x16', 'up',
    'up:16x16', '16x16,32x32'), indices constrained to a selector ('3,4,6,7@16x16') or alternatives tried in
    order ('3,4,6,7@16x16|16x16') -> the normalised text, resolved per model by :func:`resolve_layers`."""
    text = text.strip().lower().replace(" ", "")
    if text in ("", "all"):
        return None
    if "|" in text or "@" in text:
        for alt in text.split("|"):
            idx, _, sel = alt.partition("@")
            _indices(idx) if (sel or not _is_selector(idx)) else None
            if sel and not _is_selector(sel):
                raise ValueError(f"recipe field 'layers': {alt!r}: after '@' comes a selector like 16x16 or up:16x16")
        return text
    if _is_selector(text):
        return text
    return _indices(text)


def _is_selector(text: str) -> bool:
    parts = [p for p in text.split(",") if p]
    return bool(parts) and all(all(_selector_part(x) for x in p.split(":")) for p in parts)


def _indices(text: str) -> tuple[int, ...]:
    """Indices and ranges, each bounded (0..MAX_LAYER_INDEX) before any range is built."""
    out: set[int] = set()
    try:
        for part in (p for p in text.split(",") if p):
            if "-" in part:
                a, b = part.split("-")
                lo, hi = _layer_index(a, text), _layer_index(b, text)
                out.update(range(lo, hi + 1))
            else:
                out.add(_layer_index(part, text))
    except ValueError as e:
        if str(e).startswith("recipe field"):
            raise
        raise ValueError(f"recipe field 'layers': expected 'all', indices like 3,4,6,7 or 2-7, a resolution like 16x16, "
                         f"a part (down, mid, up), an attention (attn2, attn1) or several like up:16x16:attn2, got {_short(text)}") from None
    return tuple(sorted(out))


def _layer_index(text: str, spec: str) -> int:
    if not text.isdigit() or len(text) > 6 or int(text) > MAX_LAYER_INDEX:
        if text.isdigit():
            raise ValueError(f"recipe field 'layers': index {_short(text, 20)} out of range in {_short(spec)} "
                             f"(allowed: 0..{MAX_LAYER_INDEX})")
        raise ValueError("not an index")
    return int(text)


def _matches(key: str, info: LayerInfo) -> bool:
    if key in BLOCKS:
        return key == info.block
    if key in ATTENTIONS:
        return key == info.attention
    return key == f"{info.resolution}x{info.resolution}"


def _select(selector: str, layers: Sequence[LayerInfo]) -> set[int]:
    chosen = set()
    for part in selector.split(","):
        keys = part.split(":")
        for info in layers:
            if all(_matches(k, info) for k in keys):
                chosen.add(info.index)
    return chosen


def _alternative(alt: str, layers: Sequence[LayerInfo]) -> tuple[int, ...] | None:
    """One alternative resolved, or None when this model does not have what it names."""
    idx, _, sel = alt.partition("@")
    if not sel and _is_selector(idx):
        chosen = _select(idx, layers)
        return tuple(sorted(chosen)) if chosen else None
    want = _indices(idx)
    allowed = _select(sel, layers) if sel else {i.index for i in layers}
    return want if want and set(want) <= allowed else None


def resolve_layers(spec: tuple[int, ...] | str | None, layers: Sequence[LayerInfo], model: str = "the model") -> tuple[int, ...] | None:
    """A recipe's layer field as indices of this model's cross-attention layers (None = all)."""
    n = len(layers)
    if spec is None:
        return None
    if isinstance(spec, str):
        for alt in spec.split("|"):
            got = _alternative(alt, layers)
            if got is not None:
                return got
        have = ", ".join(f"{i.index}: {i.block} {i.resolution}x{i.resolution} {i.attention}" for i in layers)
        raise ValueError(f"recipe field 'layers': {spec!r} selects no cross-attention layer of {model} ({have})")
    if spec and max(spec) >= n:
        raise ValueError(f"recipe field 'layers': {max(spec)} out of range; {model} has {n} cross-attention layers (0..{n - 1})")
    return tuple(spec)


def layer_choice(spec: str, layers: Sequence[LayerInfo], chosen: Sequence[int] | None) -> dict[str, Any]:
    """What result.json records of a layer selection: the selector as written, the indices it chose, and how many
    of them are each kind of attention, out of the model's text-attending layers (a U-Net built with
    ``only_cross_attention`` has ``attn1`` layers that ``attn2`` leaves out, docs/deviations.md)."""
    picked = [layers[i] for i in (chosen if chosen is not None else range(len(layers)))]
    kinds = {k: sum(1 for i in picked if i.attention == k) for k in ATTENTIONS}
    return {"spec": spec, "indices": [i.index for i in picked], **kinds, "text_attending_layers": len(layers)}


def describe_layers(spec: tuple[int, ...] | str | None) -> str:
    """'all' for None (never 'None'), the selector, or the indices."""
    if spec is None:
        return "all"
    return spec if isinstance(spec, str) else ",".join(str(i) for i in spec)
