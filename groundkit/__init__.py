"""groundkit: zero-shot phrase grounding from the cross-attention of latent diffusion checkpoints.

    import groundkit as gk
    model = gk.load("demo")                      # or a name from checkpoints.yaml, or a folder
    model = gk.from_diffusers(pipe)              # or a StableDiffusionPipeline already in memory
    g = model.ground("cxr.png", "small left apical pneumothorax", recipe="nuetzel2025")
    g.save("out/")                               # heatmap.npy, mask.png, overlay.png, result.json
"""
from groundkit.choices import (
    get_bbm_variant,
    get_dataset,
    get_threshold,
    get_token_filter,
    list_bbm_variants,
    list_datasets,
    list_protocols,
    list_thresholds,
    list_token_filters,
    register_bbm_variant,
    register_dataset,
    register_protocol,
    register_threshold,
    register_token_filter,
)
from groundkit.core.version import __version__  # noqa: F401
from groundkit.recipes import RECIPES, Recipe, get_recipe, register_recipe


def load(*args, **kwargs):
    """See `groundkit.api.load` (imported lazily: torch/diffusers load only when needed)."""
    from groundkit.api import load as _load

    return _load(*args, **kwargs)


def list_recipes(checkpoints: bool = False) -> list[str]:
    """Every registered recipe name; ``checkpoints=True`` adds each present checkpoint's own default
    (``<name>-default``, read from disk)."""
    if not checkpoints:  # no file read, and no torch import (the registry's safe loading needs it)
        return RECIPES.names()
    from groundkit.registry import list_recipes as _list

    return _list(checkpoints)


def from_diffusers(*args, **kwargs):
    """See `groundkit.api.from_diffusers`: ground with a diffusers pipeline already in memory."""
    from groundkit.api import from_diffusers as _from_diffusers

    return _from_diffusers(*args, **kwargs)


def list_checkpoints(checkpoints_file=None):
    """Every named checkpoint (see `groundkit.api.list_checkpoints`)."""
    from groundkit.api import list_checkpoints as _list

    return _list(checkpoints_file)


def list_adapters():
    """Every installed model family (see `groundkit.api.list_adapters`)."""
    from groundkit.api import list_adapters as _list

    return _list()


def register_adapter(name, cls):
    """Register a model family at run time (installed packages use the `groundkit.adapters` entry point)."""
    from groundkit.registry import register_adapter as _register

    return _register(name, cls)


def get_adapter(name):
    """The adapter class of a model family (see `groundkit.registry.get_adapter`)."""
    from groundkit.registry import get_adapter as _get

    return _get(name)


def get_protocol(name):
    """A metric protocol by name, ready to ``evaluate`` (see `groundkit.evaluation.protocols.get_protocol`)."""
    from groundkit.evaluation.protocols import get_protocol as _get

    return _get(name)


def __getattr__(name):
    if name == "Grounding":
        from groundkit.grounding import Grounding

        return Grounding
    if name == "GroundingModel":
        from groundkit.api import GroundingModel

        return GroundingModel
    if name == "registry":
        import groundkit.registry as registry

        return registry
    raise AttributeError(name)


__all__ = ["load", "from_diffusers", "list_checkpoints", "list_adapters", "list_recipes", "register_adapter", "register_recipe",
           "Recipe", "RECIPES", "get_recipe", "Grounding", "GroundingModel", "get_adapter",
           # one registry shape for every named choice (docs/registries.md): register_* / get_* / list_*
           "register_threshold", "get_threshold", "list_thresholds", "register_token_filter", "get_token_filter",
           "list_token_filters", "register_bbm_variant", "get_bbm_variant", "list_bbm_variants", "register_protocol",
           "get_protocol", "list_protocols", "register_dataset", "get_dataset", "list_datasets"]
