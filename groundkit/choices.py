"""The named choices a recipe or a run makes, one registry each, all of one shape (docs/registries.md).

    kind           register_* / get_* / list_*         entry-point group           a built-in is
    threshold      register_threshold ...              groundkit.thresholds        fn(h, recipe, raw=None) -> (map, mask)
    token filter   register_token_filter ...           groundkit.token_filters     fn(view, args) -> Picked
    BBM variant    register_bbm_variant ...            groundkit.bbm_variants      fn(A, M, s) -> merged map
    protocol       register_protocol ...               groundkit.protocols         a class: evaluate(map, mask, geometry, boxes)
    dataset        register_dataset ...                groundkit.datasets          fn(*, csv, images, data, split) -> samples

Adapters (:mod:`groundkit.registry`) and recipes (:mod:`groundkit.recipes`) have the same functions. The
built-ins are declared in the tables below (name -> where it lives); a registry imports one only when it is
asked for by name, so listing is free and nothing is registered by importing a module. Every table sits
here, below the recipes that name its entries, so that a recipe's field is checked against what exists.
"""
from __future__ import annotations

from typing import Any, Callable

from groundkit.core.registry import Registry

__all__ = ["BBM_VARIANTS", "DATASETS", "PROTOCOLS", "THRESHOLDS", "TOKEN_FILTERS", "check_named", "get_bbm_variant", "get_dataset",
           "get_protocol_class", "get_threshold", "get_token_filter", "list_bbm_variants", "list_datasets", "list_protocols",
           "list_thresholds", "list_token_filters", "register_bbm_variant", "register_dataset", "register_protocol",
           "register_threshold", "register_token_filter", "split_token_spec"]

_T = "groundkit.engine.thresholds"
THRESHOLDS: Registry[Callable] = Registry("threshold", group="groundkit.thresholds", builtins={
    "otsu": f"{_T}:otsu", "multiotsu": f"{_T}:multiotsu", "gmm": f"{_T}:gmm", "none": f"{_T}:none"})

_F = "groundkit.engine.token_filters"
TOKEN_FILTERS: Registry[Callable] = Registry("token filter", group="groundkit.token_filters", builtins={
    "all": f"{_F}:every_word", "lexical": f"{_F}:lexical", "disease": f"{_F}:disease", "words": f"{_F}:words",
    "start": f"{_F}:start"})

_B = "groundkit.engine.bbm_variants"
BBM_VARIANTS: Registry[Callable] = Registry("BBM variant", group="groundkit.bbm_variants", builtins={
    "mixture": f"{_B}:mixture", "linear": f"{_B}:linear", "quadratic": f"{_B}:quadratic"})

_P = "groundkit.evaluation.protocols"
PROTOCOLS: Registry[type] = Registry("protocol", group="groundkit.protocols", builtins={
    "vilouras": f"{_P}:VilourasProtocol", "nuetzel": f"{_P}:NuetzelProtocol"},
    aliases={"vilouras2024": "vilouras", "nuetzel2025": "nuetzel", "nutzel": "nuetzel", "nützel": "nuetzel"})

_D = "groundkit.bench.datasets"
DATASETS: Registry[Callable] = Registry("dataset", group="groundkit.datasets", builtins={
    "mscxr": f"{_D}:load_mscxr", "synthetic": f"{_D}:load_synthetic"})


def check_named(key: str, value: Any) -> None:
    """A recipe field that names a registered choice (threshold, bbm, protocol, tokens) names one that exists;
    the message names the field and lists what is registered. Other fields pass."""
    registry = {"threshold": THRESHOLDS, "bbm": BBM_VARIANTS, "protocol": PROTOCOLS, "tokens": TOKEN_FILTERS}.get(key)
    if registry is None or value is None:
        return
    name = split_token_spec(value)[0] if key == "tokens" else value
    if name not in registry:
        raise ValueError(f"recipe field {key!r}: unknown {registry.kind} {name!r:.80}; known: {', '.join(registry.names())}")


def register_threshold(name: str, fn: Callable) -> Callable:
    """``fn(h, recipe, raw=None) -> (map, bool mask)``: ``h`` is the min-maxed map in [0, 1]; ``raw`` the map
    before that min-max when BBM made one (a threshold fitted on raw values, as the published GMM, uses it)."""
    return THRESHOLDS.register(name, fn)


def get_threshold(name: str) -> Callable:
    return THRESHOLDS.get(name)


def list_thresholds() -> list[str]:
    return THRESHOLDS.names()


def register_token_filter(name: str, fn: Callable) -> Callable:
    """``fn(view, args) -> Picked``; ``args`` are the comma-separated words after ``name:`` in the recipe's
    ``tokens`` field (see :mod:`groundkit.engine.token_filters`)."""
    return TOKEN_FILTERS.register(name, fn)


def get_token_filter(name: str) -> Callable:
    return TOKEN_FILTERS.get(name)


def list_token_filters() -> list[str]:
    return TOKEN_FILTERS.names()


def split_token_spec(spec: str) -> tuple[str, list[str]]:
    """A ``tokens`` field as (filter name, its arguments): ``"words:left,apical"`` -> ("words", ["left",
    "apical"]); ``"words=[a, b]"`` is the same. Names are case-insensitive; arguments keep their case."""
    if not isinstance(spec, str):
        raise ValueError(f"token filter: expected text such as 'lexical' or 'words:w1,w2', got {type(spec).__name__}")
    cut = min((i for i in (spec.find(":"), spec.find("=")) if i >= 0), default=len(spec))
    name, body = spec[:cut].strip().lower(), spec[cut + 1:].strip()
    if body.startswith("[") and body.endswith("]"):
        body = body[1:-1]
    args = [e.strip().strip("'\"").strip() for e in body.split(",")]
    return name, [a for a in args if a]


def register_bbm_variant(name: str, fn: Callable) -> Callable:
    """``fn(A, M, s) -> P``: blend the map A with the bias-product map M by weight s (numpy arrays, or float16
    tensors when the recipe replicates the published float16 arithmetic: use operators only)."""
    return BBM_VARIANTS.register(name, fn)


def get_bbm_variant(name: str) -> Callable:
    return BBM_VARIANTS.get(name)


def list_bbm_variants() -> list[str]:
    return BBM_VARIANTS.names()


def register_protocol(name: str, cls: type) -> type:
    """A metric protocol class (subclass :class:`groundkit.evaluation.protocols.MetricProtocol`)."""
    return PROTOCOLS.register(name, cls)


def get_protocol_class(name: str) -> type:
    """The protocol class (``groundkit.evaluation.protocols.get_protocol`` gives an instance)."""
    return PROTOCOLS.get(str(name).strip().lower())


def list_protocols() -> list[str]:
    return PROTOCOLS.names()


def register_dataset(name: str, loader: Callable[..., Any]) -> Callable[..., Any]:
    """``loader(*, csv, images, data, split) -> groundkit.data.mscxr.MSCXR`` (accept and ignore the keywords it
    does not use: ``**_``)."""
    return DATASETS.register(name, loader)


def get_dataset(name: str) -> Callable[..., Any]:
    return DATASETS.get(name)


def list_datasets() -> list[str]:
    return DATASETS.names()
