"""groundkit: zero-shot phrase grounding from the cross-attention of latent diffusion checkpoints.

    import groundkit as gk
    model = gk.load("demo")                      # or a name from checkpoints.yaml, or a folder
    g = model.ground("cxr.png", "small left apical pneumothorax", recipe="nuetzel2025")
    g.save("out/")                               # heatmap.npy, mask.png, overlay.png, result.json
"""
__version__ = "0.1.0"

from .recipes import RECIPES, Recipe, get_recipe, register_recipe  # noqa: E402


def load(*args, **kwargs):
    """See `groundkit.api.load` (imported lazily: torch/diffusers load only when needed)."""
    from .api import load as _load

    return _load(*args, **kwargs)


def list_checkpoints(file=None):
    from .registry import load_checkpoints

    return list(load_checkpoints(file).values())


def __getattr__(name):
    if name in ("Grounding",):
        from .grounding import Grounding

        return Grounding
    if name in ("GroundingModel",):
        from .api import GroundingModel

        return GroundingModel
    raise AttributeError(name)


__all__ = ["load", "list_checkpoints", "Recipe", "RECIPES", "get_recipe", "register_recipe", "Grounding", "GroundingModel"]
