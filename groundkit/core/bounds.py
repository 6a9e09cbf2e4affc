"""Every bounded value groundkit takes, as data: the recipe fields' types and ranges (:data:`FIELDS`, checked by
:func:`groundkit.recipes.parse_field` and on every ``Recipe``) and the checkpoint options all families share
(:data:`OPTION_CHECKS`, checked by the registry with the file and key named). docs/recipe-fields.md shows both
tables. Each value is checked once, before any work: a range is bounded before anything is built from it."""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable

from groundkit.core.yamlfile import short

MODES = ("gt-noised", "ddim-inversion")
LATENTS = ("mean", "sample")
UPSAMPLE = ("bilinear", "nearest")
# threshold, bbm, protocol and tokens name a registered choice: checked as text here, and the name against its
# registry by groundkit.choices.check_named, so that a threshold or protocol a third party registers is accepted

MAX_GRID = 10_000  # entries of a timestep grid: leading:N and stride:K take 1 <= N, K <= MAX_GRID
MAX_LAYER_INDEX = 1023  # layer indices 0..1023 (no U-Net has more cross-attention layers)
MAX_SIGMA = 256.0  # Gaussian smoothing, in pixels of the aggregated map
MAX_GUIDANCE = 1000.0
SEED_LIMIT = 2**32  # numpy / scikit-learn seeds: 0 <= seed < 2**32
MAX_BATCH = 4096
MAX_TEXT = 4096  # characters of any text-valued field (layer selectors, token filters, names)


def is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)  # numpy integers too


def is_num(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _window(v: Any) -> bool:
    return (isinstance(v, tuple) and len(v) == 2 and all(is_int(x) for x in v)
            and 0 <= v[0] < v[1] <= MAX_GRID)


def _grid(v: Any) -> bool:
    if not isinstance(v, str) or len(v) > 40:
        return False
    kind, _, num = v.partition(":")
    return kind in ("leading", "stride") and num.isdigit() and 1 <= int(num) <= MAX_GRID


def _layers(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, str):
        return 0 < len(v) <= MAX_TEXT
    return (isinstance(v, tuple) and len(v) <= MAX_LAYER_INDEX + 1
            and all(is_int(i) and 0 <= i <= MAX_LAYER_INDEX for i in v))


def _text(v: Any) -> bool:
    return isinstance(v, str) and 0 < len(v) <= MAX_TEXT


@dataclass(frozen=True)
class FieldSpec:
    """One recipe field: its type and allowed range as a user reads them, what it means, and the check."""

    type: str
    range: str
    meaning: str
    ok: Callable[[Any], bool]


def _choice(options: tuple, meaning: str, optional: bool = False) -> FieldSpec:
    allowed = options + ((None,) if optional else ())
    return FieldSpec("one of", " | ".join("none" if o is None else o for o in allowed), meaning,
                     lambda v: (v is None and optional) or (isinstance(v, str) and v in options))


_BOOL = ("true/false", "true | false")
FIELDS: dict[str, FieldSpec] = {
    "name": FieldSpec("text", f"1..{MAX_TEXT} characters", "the recipe's name", _text),
    "mode": _choice(MODES, "which noisy latents the U-Net sees"),
    "grid": FieldSpec("text", f"leading:N or stride:K, 1 <= N, K <= {MAX_GRID}; leading: N <= the model's "
                      "training timesteps", "the timestep grid", _grid),
    "steps": FieldSpec("START:END", f"0 <= START < END <= {MAX_GRID} (END <= the grid's length)",
                       "window of grid steps that is aggregated", _window),
    "layers": FieldSpec("layer selector", f"all | indices 0..{MAX_LAYER_INDEX} (3,4,6,7 or 2-7) | a resolution (16x16) | "
                        "a part (down, mid, up) | an attention (attn2, attn1) | combined (up:16x16:attn2) | IDX@SEL | A|B", "cross-attention layers", _layers),
    "tokens": FieldSpec("token filter", "a registered filter: all | lexical | disease | words:w1,w2 | ...",
                        "which tokens' maps are averaged", _text),
    "layer_norm": FieldSpec(*_BOOL, "min-max every (step, layer) map before averaging", lambda v: isinstance(v, bool)),
    "upsample": _choice(UPSAMPLE, "how layer maps reach the common grid"),
    "sigma": FieldSpec("number or none", f"finite, 0 <= sigma <= {MAX_SIGMA:g}, or none", "Gaussian smoothing of the map",
                       lambda v: v is None or (is_num(v) and math.isfinite(v) and 0 <= v <= MAX_SIGMA)),
    "threshold": FieldSpec("one of", "the registered thresholds: otsu | multiotsu | gmm | none | ...",
                           "post-processing threshold", _text),
    "bbm": FieldSpec("one of", "the registered BBM variants: mixture | linear | quadratic | ..., or none",
                     "Bimodal Bias Merging variant", lambda v: v is None or _text(v)),
    "bbm_steps": FieldSpec("START:END", f"0 <= START < END <= {MAX_GRID}", "window of both BBM passes", _window),
    "guidance_scale": FieldSpec("number", f"finite, 0 <= guidance_scale <= {MAX_GUIDANCE:g}",
                                "classifier-free guidance of BBM's text-only pass",
                                lambda v: is_num(v) and math.isfinite(v) and 0 <= v <= MAX_GUIDANCE),
    "latent": _choice(LATENTS, "GT-noised z0: the VAE posterior mean or a fresh sample"),
    "map_fp16": FieldSpec(*_BOOL, "replicate the published float16 casts", lambda v: isinstance(v, bool)),
    "drop_empty": FieldSpec(*_BOOL, "benchmark: drop samples whose token filter selects nothing", lambda v: isinstance(v, bool)),
    "protocol": FieldSpec("one of", "the registered protocols: vilouras | nuetzel | ...", "evaluation protocol", _text),
    "seed": FieldSpec("integer", f"0 <= seed < {SEED_LIMIT} = 2**32", "random seed (noise, GMM)",
                      lambda v: is_int(v) and 0 <= v < SEED_LIMIT),
    "batch_size": FieldSpec("integer or auto", f"0 <= batch_size <= {MAX_BATCH}; 0 or auto = automatic", "U-Net batch items per forward",
                            lambda v: is_int(v) and 0 <= v <= MAX_BATCH),
}


def field_error(name: str, value: Any, why: str = "") -> ValueError:
    spec = FIELDS[name]
    return ValueError(f"recipe field {name!r}: expected {spec.type} ({spec.range}), got {short(value)}" + (f"; {why}" if why else ""))


def check_field(name: str, value: Any) -> None:
    """Raise ValueError (field, value, allowed range) unless ``value`` is a valid, parsed value of ``name``."""
    spec = FIELDS.get(name)
    if spec is None:
        raise ValueError(f"unknown recipe field {name!r}; known fields: {', '.join(sorted(FIELDS))}")
    if not spec.ok(value):
        raise field_error(name, value)




MAX_IMAGE_SIZE = 4096  # side of the square model input, in pixels
MAX_TOKENS = 4096  # tokens per phrase (and never more than the text encoder's positions)
MAX_SCALE = 1000.0


def _int_in(lo: int, hi: int, multiple: int = 1):
    def ok(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi and v % multiple == 0
    return ok


def _text_opt(v: Any) -> bool:
    return isinstance(v, str) and 0 < len(v) <= 4096 and "\x00" not in v


# checkpoint options every family shares by name: (what is allowed, check); a config value is checked here,
# with the file and key in the message, before any adapter sees it (docs/recipe-fields.md)
OPTION_CHECKS: dict[str, tuple[str, Any]] = {
    "image_size": (f"an integer, a multiple of 8, 8..{MAX_IMAGE_SIZE} (pixels)", _int_in(8, MAX_IMAGE_SIZE, 8)),
    "max_length": (f"an integer 1..{MAX_TOKENS} (tokens per phrase)", _int_in(1, MAX_TOKENS)),
    "scale_factor": (f"a finite number, 0 < scale_factor <= {MAX_SCALE:g}",
                     lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 0 < v <= MAX_SCALE),
    "attention_mask": ("true or false", lambda v: isinstance(v, bool)),
    "null_attention_mask": ("true or false", lambda v: isinstance(v, bool)),
    "text_encoder": ("a folder path (text)", _text_opt),
    "tokenizer": ("a folder path (text)", _text_opt),
    "unet_subfolder": ("a subfolder name (text)", _text_opt),
    "vae": ("a subfolder name (text) or identity", _text_opt),
    "scheduler": ("a subfolder name (text) or a mapping of scheduler settings",
                  lambda v: _text_opt(v) or (isinstance(v, dict) and len(v) <= 100)),
    "hints": ("a mapping of component -> text", lambda v: isinstance(v, dict) and len(v) <= 100),
}


def option_problem(key: str, value: Any) -> str | None:
    """What is wrong with a shared checkpoint option's value ("expected ..., got ..."), or None."""
    rule = OPTION_CHECKS.get(key)
    if rule is None or value is None or rule[1](value):
        return None
    return f"expected {rule[0]}, got {short(value)}"
