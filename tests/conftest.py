"""Make ``tests/`` importable as a plain directory (``from builders import ...``).

The tests folder has no ``__init__.py`` on purpose: monai-generative installs a stray top-level ``tests``
package into site-packages, so ``import tests.x`` would be ambiguous. Helpers are imported by module name
with this folder on ``sys.path`` instead.
"""
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
# a third-party model family installed through its entry point (tests/plugins/*.dist-info): the adapter
# contract suite runs over it like over the built-in families
_PLUGINS = os.path.join(_HERE, "plugins")
if _PLUGINS not in sys.path:
    sys.path.insert(0, _PLUGINS)

import pytest


@pytest.fixture(scope="session")
def tiny_monai_bundle(tmp_path_factory):
    """Tiny MONAI model-zoo bundle (old monai-generative state dicts: the [dev] extra installs it)."""
    from builders import build_monai_bundle

    return build_monai_bundle(tmp_path_factory.mktemp("monai_bundle"), tiny=True, seed=0)


@pytest.fixture(scope="session")
def tiny_sd_cxrbert(tmp_path_factory):
    """Tiny diffusers SD-1.5 + CXR-BERT tree."""
    from builders import build_sd_cxrbert

    return build_sd_cxrbert(tmp_path_factory.mktemp("sd_cxrbert"), tiny=True, seed=0)


def pytest_configure(config):
    """One torch thread: the suite runs tiny models, where thread hand-offs cost more than they buy
    (and torchrun workers use one thread too, so 1-process vs 2-rank results compare exactly)."""
    import torch

    torch.set_num_threads(1)


def served_at(tree, image_size: int, tmp_path_factory):
    """A copy of a checkpoint tree whose groundkit.yaml serves it at ``image_size`` (smaller latents: faster tests)."""
    import shutil

    root = tmp_path_factory.mktemp(f"served{image_size}") / "ckpt"
    shutil.copytree(tree, root)
    (root / "groundkit.yaml").write_text(f"image_size: {image_size}\n")
    return root
