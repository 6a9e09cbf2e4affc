"""Recipes: every choice of a grounding protocol as data (docs/protocols.md).

A paper's protocol is a named `Recipe`, not a code path. Users override any field by name, from
Python (`m.ground(..., layers=(3, 4))`) or the CLI (`--set layers=3,4`); the resolved recipe and where
each field came from (recipe, checkpoint, user) are written into every result, so a number can always
be traced to the exact settings behind it.

Layers are chosen by what they are, so that a published recipe runs on every architecture: ``"16x16"``
(the cross-attention layers whose query grid is 16x16), ``"up"`` / ``"down"`` / ``"mid"`` (by U-Net part),
``"up:16x16"`` (both), ``"attn2"`` (each block's cross-attention; ``attn1`` where a block attends to the text
with it), ``"all"``, raw indices ``"3,4,6,7"`` / ``"2-7"`` into the model's forward order,
indices that must be of a kind (``"3,4,6,7@16x16"``) and alternatives tried in order (``"A|B"``). A selector
is resolved per model (:func:`~groundkit.core.layers.resolve_layers`): ``vilouras2024`` says ``"3,4,6,7@16x16:attn2|16x16:attn2"``, which on the
MONAI chest X-ray LDM is exactly the published layers 3, 4, 6, 7 and on any other U-Net its 16x16 layers.
The published recipes select ``attn2`` layers only, as the published code hooks them (docs/deviations.md).
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Sequence

from groundkit.choices import BBM_VARIANTS, PROTOCOLS, THRESHOLDS, TOKEN_FILTERS, check_named  # noqa: F401 - re-exported
from groundkit.core.bounds import (  # noqa: F401 - re-exported: the field values and limits belong to the recipe API
    FIELDS,
    LATENTS,
    MAX_GRID,
    MAX_LAYER_INDEX,
    MAX_TEXT,
    MODES,
    UPSAMPLE,
    FieldSpec,
    check_field,
    field_error,
    is_int,
    is_num,
)
from groundkit.core.layers import (  # noqa: F401 - re-exported: layer selectors are a recipe field's language
    ATTENTIONS,
    BLOCKS,
    describe_layers,
    layer_choice,
    parse_layers,
    resolve_layers,
)
from groundkit.core.registry import Registry
from groundkit.core.types import LayerInfo
from groundkit.core.yamlfile import short as _short


@dataclass(frozen=True)
class Recipe:
    name: str = "custom"
    # --- sampling: which noisy latents the U-Net sees (docs/protocols.md §3)
    mode: str = "gt-noised"
    grid: str = "leading:50"  # timestep grid: "leading:N" (DDIM, descending) or "stride:K" (t = 0, K, 2K, ... ascending)
    # --- window: what is aggregated
    steps: tuple[int, int] = (10, 50)  # [start, end) indices into the grid, in run order
    layers: tuple[int, ...] | str | None = None  # indices in forward order, a selector ("16x16", "up", "up:16x16", "attn2"), None = all
    # --- token filter (docs/protocols.md §4): all | lexical | disease | words:a,b
    tokens: str = "all"
    # --- post-processing (docs/protocols.md §5)
    layer_norm: bool = False  # min-max every (step, layer) map before averaging (Vilouras)
    upsample: str = "nearest"  # how layer maps reach the common grid: bilinear to the input size, or nearest to the largest layer
    sigma: float | None = None  # Gaussian smoothing of the aggregated map
    threshold: str = "gmm"
    bbm: str | None = None  # Bimodal Bias Merging variant, or None
    bbm_steps: tuple[int, int] = (0, 50)  # window of both BBM passes (published: all 50 steps)
    guidance_scale: float = 16.0  # text-only DDIM sampling pass of BBM (published value)
    # --- fidelity knobs that only the published Nuetzel code needs (docs/protocols.md)
    latent: str = "mean"  # GT-noised z0: the VAE posterior "mean", or a fresh posterior "sample" per step (seeded)
    map_fp16: bool = False  # replicate the published float16 casts of the aggregated and the final map
    drop_empty: bool = False  # benchmark: drop (and count) samples whose token filter selects nothing
    # --- evaluation
    protocol: str = "nuetzel"
    # --- engine
    seed: int = 0
    batch_size: int = 0  # U-Net batch items per forward (timesteps x phrases); 0 = automatic: from free memory on CUDA, 8 on CPU/MPS

    def __post_init__(self) -> None:
        for f in fields(self):  # every field against its row of FIELDS (type and range), then the cross-field rules
            check_field(f.name, getattr(self, f.name))
            check_named(f.name, getattr(self, f.name))
        for name in ("steps", "bbm_steps"):
            a, b = getattr(self, name)
            if not 0 <= a < b:
                raise ValueError(f"recipe field {name!r}: expected 0 <= start < end, got {a}:{b}")
        if self.bbm is not None and self.mode != "gt-noised":
            raise ValueError("recipe field 'bbm': Bimodal Bias Merging needs mode='gt-noised' (its image bias is the GT-noised start-token map)")

    # ------------------------------------------------------------------ helpers
    def override(self, **changes: Any) -> Recipe:
        """A copy with fields changed; values may be strings as typed on a command line."""
        known = {f.name: f for f in fields(self)}
        parsed = {}
        for key, value in changes.items():
            key = key.replace("-", "_")
            if key not in known:
                raise ValueError(f"unknown recipe field {key!r}; known fields: {', '.join(sorted(known))}")
            parsed[key] = parse_field(key, value)
        return replace(self, **parsed)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def digest(self) -> str:
        """Short hash of everything that changes the numbers (the name and the engine's batch size do not)."""
        d = self.to_dict()
        d.pop("name")
        d.pop("batch_size")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]

    def timesteps(self, num_train_timesteps: int = 1000) -> list[int]:
        """The whole grid in run order (sampling order for 'leading', inversion order for 'stride')."""
        kind, num = self.grid.split(":")
        n = int(num)
        if kind == "stride":
            return list(range(0, num_train_timesteps, n))
        if n > num_train_timesteps:
            raise ValueError(f"recipe field 'grid': {self.grid} asks for {n} steps, more than the model's "
                             f"{num_train_timesteps} training timesteps (allowed: leading:1..{num_train_timesteps})")
        ratio = num_train_timesteps // n
        return [i * ratio + 1 for i in reversed(range(n))]  # diffusers "leading", steps_offset 1


def parse_field(key: str, value: Any) -> Any:
    """One override (a string as typed on a command line, or a YAML / Python value) parsed and checked against
    its row of :data:`FIELDS`; the message names the field, the value and what is allowed."""
    key = key.replace("-", "_")
    if key not in FIELDS:
        raise ValueError(f"unknown recipe field {key!r}; known fields: {', '.join(sorted(FIELDS))}")
    if isinstance(value, str) and len(value) > MAX_TEXT:
        raise field_error(key, value, f"{len(value)} characters, at most {MAX_TEXT}")
    out = _parse(key, value) if isinstance(value, str) else _normalise(key, value)
    check_field(key, out)
    check_named(key, out)
    return out


def check_overrides(overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Every override checked on its own (no recipe needed): called before a model is loaded, so that a bad
    ``--set`` fails in milliseconds. Returns the overrides unchanged."""
    if overrides is None:
        return {}
    if not isinstance(overrides, dict):
        raise ValueError(f"recipe overrides: expected a mapping of recipe fields to values, got {_short(overrides)}")
    for key, value in overrides.items():
        if not isinstance(key, str):
            raise ValueError(f"recipe overrides: field names are text, got {_short(key)}")
        parse_field(key, value)
    return overrides


def _range(text: str, name: str) -> tuple[int, int]:
    try:
        a, b = text.split(":")
        if len(a.strip()) > 12 or len(b.strip()) > 12:
            raise ValueError
        return int(a), int(b)
    except ValueError:
        raise ValueError(f"recipe field {name!r}: expected START:END (e.g. 120:180) with 0 <= START < END <= {MAX_GRID}, "
                         f"got {_short(text)}") from None


def _parse(key: str, value: str) -> Any:
    """A field's value as typed on a command line (``--set key=value``) or written as text in YAML."""
    if key in ("steps", "bbm_steps"):
        return _range(value, key)
    if key == "layers":
        return parse_layers(value)
    if key in ("sigma", "bbm"):
        if value.strip().lower() in ("none", "off", ""):
            return None
        return _number(key, value, float) if key == "sigma" else value
    if key in ("layer_norm", "map_fp16", "drop_empty"):
        if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise field_error(key, value)
        return value.lower() in ("true", "1", "yes")
    if key == "batch_size" and value.strip().lower() == "auto":
        return 0
    if key in ("seed", "batch_size"):
        return _number(key, value, int)
    if key == "guidance_scale":
        return _number(key, value, float)
    return value


def _number(key: str, text: str, kind: type) -> Any:
    t = text.strip()
    if len(t) > 40:  # int() of thousands of digits is slow, and no valid value is that long
        raise field_error(key, text)
    try:
        return kind(t)
    except (ValueError, OverflowError):
        raise field_error(key, text) from None


_SEQUENCE = (list, tuple, range)


def _normalise(key: str, value: Any) -> Any:
    """A field's value given as a Python / YAML value: only the types the field takes (a set, a mapping, a
    float where an integer is expected are refused by name)."""
    if hasattr(value, "tolist") and key in ("steps", "bbm_steps", "layers"):  # a numpy array or scalar
        value = value.tolist()
    if key in ("steps", "bbm_steps") and value is not None:
        if is_int(value):
            raise ValueError(f"recipe field {key!r}: got the number {value}; YAML 1.1 reads an unquoted 40:50 as a "
                             "base-60 number: write '40:50' in quotes or [40, 50]")
        if not isinstance(value, _SEQUENCE) or len(value) != 2 or not all(is_int(v) for v in value):
            raise field_error(key, value, "a list of two integers, e.g. [40, 50], or '40:50'")
        return tuple(int(v) for v in value)
    if key == "layers" and value is not None:
        if not isinstance(value, _SEQUENCE) or len(value) > MAX_LAYER_INDEX + 1 or not all(is_int(v) for v in value):
            raise field_error(key, value, f"a selector as text, or a list of at most {MAX_LAYER_INDEX + 1} integer indices")
        return tuple(sorted({int(v) for v in value}))
    if key in ("layer_norm", "map_fp16", "drop_empty") and is_int(value) and value in (0, 1):
        return bool(value)
    if key in ("sigma", "guidance_scale") and is_num(value):
        return float(value) if math.isfinite(value) else value  # non-finite: refused by the table
    if key in ("seed", "batch_size") and is_int(value):
        return int(value)
    return value


VILOURAS2024 = Recipe(
    name="vilouras2024",
    mode="ddim-inversion",
    grid="stride:3",  # published "300-step trailing" grid: t = 0, 3, ..., 999 (334 entries)
    steps=(120, 180),  # t = 360..537
    # the published layers 3, 4, 6, 7 of the MONAI LDM (four of its six 16x16 layers: the second attention of the
    # 16x16 down block, the mid block, the second and third of the 16x16 up block); elsewhere: every 16x16 layer.
    # attn2 only: the published code hooks each block's cross-attention, never an attn1 (docs/deviations.md)
    layers="3,4,6,7@16x16:attn2|16x16:attn2",
    tokens="all",
    layer_norm=True,
    upsample="bilinear",
    sigma=2.5,
    threshold="multiotsu",
    protocol="vilouras",
)

NUETZEL2025 = Recipe(
    name="nuetzel2025",
    mode="gt-noised",
    grid="leading:50",
    steps=(10, 50),  # the last 40 of 50 steps
    layers="attn2",  # every block's cross-attention, as the published code hooks (not an only_cross_attention attn1)
    tokens="lexical",
    layer_norm=False,
    upsample="nearest",
    sigma=None,
    threshold="gmm",
    protocol="nuetzel",
    latent="sample",  # the published GT pass draws a fresh VAE posterior sample at every step
    map_fp16=True,  # the published code casts the aggregated map to float16 and saves it so
    drop_empty=True,  # a phrase with no selected token gives a NaN map there and leaves the averages
)

NUETZEL2025_BBM = replace(NUETZEL2025, name="nuetzel2025-bbm", bbm="mixture")

# Measured fast variants (benchmarks/demo/quality.py on the held-out synthetic split, docs/recipes.md "Fast
# recipes"): registered only because every macro metric stayed within 2% of the faithful recipe.
# They do not give the published maps; use the faithful names to reproduce a paper.
VILOURAS2024_FAST = replace(VILOURAS2024, name="vilouras2024-fast", grid="stride:9", steps=(40, 60))  # same t = 360..531, 3x fewer calls
NUETZEL2025_FAST = replace(NUETZEL2025, name="nuetzel2025-fast", steps=(45, 50))  # last 5 of 50 steps (Nuetzel App. C: saturates after ~5)

# the built-in recipes, declared (a third party's ship under the entry-point group groundkit.recipes)
RECIPES: Registry[Recipe] = Registry("recipe", group="groundkit.recipes", builtins={
    r: f"groundkit.recipes:{v}" for r, v in (("vilouras2024", "VILOURAS2024"), ("nuetzel2025", "NUETZEL2025"),
                                             ("nuetzel2025-bbm", "NUETZEL2025_BBM"), ("vilouras2024-fast", "VILOURAS2024_FAST"),
                                             ("nuetzel2025-fast", "NUETZEL2025_FAST"))})
PUBLISHED = ("vilouras2024", "nuetzel2025", "nuetzel2025-bbm")


def get_recipe(recipe: str | Recipe) -> Recipe:
    if isinstance(recipe, Recipe):
        return recipe
    return RECIPES.get(recipe)


def list_recipes() -> list[str]:
    """Every registered recipe name (reads no file: a checkpoint's own default is listed once it is registered,
    see ``groundkit.list_recipes(checkpoints=True)``)."""
    return RECIPES.names()


def register_recipe(recipe: Recipe) -> Recipe:
    """Add a named recipe (e.g. a measured fast variant) so that it can be used by name."""
    return RECIPES.register(recipe.name, recipe)


def register_checkpoint_recipe(name: str, base: str, overrides: dict[str, Any]) -> Recipe:
    """A checkpoint's own default recipe: ``base`` with the checkpoint's overrides, under its own name
    (e.g. ``demo-default``), so that ``nuetzel2025`` always means the published settings."""
    if name in PUBLISHED:
        raise ValueError(f"a checkpoint recipe may not take the published name {name!r}")
    return register_recipe(replace(get_recipe(base).override(**overrides), name=name))


@dataclass(frozen=True)
class Resolved:
    """A recipe resolved for one model, and where each field's value came from."""

    recipe: Recipe
    provenance: dict[str, str]  # field -> "recipe" | "checkpoint" | "user"
    layers_spec: str  # the layer field as written (e.g. "16x16"), before resolution to indices

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.recipe.name, "provenance": dict(self.provenance), "layers_spec": self.layers_spec}


def resolve_recipe(recipe: str | Recipe | None, default: str, overrides: dict[str, Any] | None = None,
                   layers: Sequence[LayerInfo] | None = None, grid_len: int | None = None, model: str = "the model",
                   base_of_default: str | None = None) -> Resolved:
    """The one place a recipe is resolved: the named (or the checkpoint's ``default``) recipe, then the
    user's overrides, then the layer selector resolved for this model and windows checked against its grid.

    ``base_of_default`` names the published recipe a checkpoint default was made from, so that fields it
    changed are reported as coming from the checkpoint."""
    base = get_recipe(recipe if recipe is not None else default)
    reference = get_recipe(base_of_default) if (recipe is None and base_of_default) else base
    r = base.override(**overrides) if overrides else base
    provenance = {}
    for f in fields(Recipe):
        if f.name == "name":
            continue
        if overrides and f.name in {k.replace("-", "_") for k in overrides}:
            provenance[f.name] = "user"
        elif getattr(base, f.name) != getattr(reference, f.name):
            provenance[f.name] = "checkpoint"
        else:
            provenance[f.name] = "recipe"
    spec = describe_layers(r.layers)
    if layers is not None:
        r = replace(r, layers=resolve_layers(r.layers, layers, model))
    if grid_len is not None:
        for name in ("steps",) + (("bbm_steps",) if r.bbm else ()):
            a, b = getattr(r, name)
            if b > grid_len:
                raise ValueError(f"recipe field {name!r}: {a}:{b} exceeds the grid {r.grid} ({grid_len} steps)")
    return Resolved(r, provenance, spec)
