"""The adapter contract suite, for a model family's own pytest run (a plugin's as much as a built-in's).

Subclass :class:`AdapterContract` in your tests, name your registered family and write a tiny checkpoint of it
(random weights, the on-disk layout you publish); pytest then runs every check on it, as diffusers' test mixins
do for a pipeline::

    from groundkit.testing import AdapterContract

    class TestMyFamily(AdapterContract):
        adapter_name = "my-family"            # the name your groundkit.adapters entry point registers

        @classmethod
        def build_checkpoint(cls, root):
            return my_package.testing.build(root / "tiny")   # -> the checkpoint folder

The checks: the class declares the Adapter protocol (name, options, default recipe, detect); the name resolves to
the class through the registry; a checkpoints.yaml entry loads it; its declared files pass ``checkpoints verify``
(in-process and through the CLI); its layers are in canonical order; images and text encode to the declared
shapes; capture reports post-softmax attention on every cross-attention layer and leaves the model unchanged; the
portable recipes ground end to end; and a weights file replaced by a pickle that runs code is refused without
running it. Each check is also a plain function (``check_*``) taking a :class:`ContractCase`.

Where it sits: it loads through the public API and ``checkpoints verify`` (the registry/API layer) and is
imported by tests only; it needs pytest. The built-in families are parametrized over every registered adapter by
:func:`contract_cases`: a family folder provides ``contract.tiny_checkpoints()`` beside its adapter module.
"""
from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from groundkit.api import load
from groundkit.core.adapter import Adapter, Component
from groundkit.core.geometry import Geometry
from groundkit.core.types import TextBatch
from groundkit.engine.pipeline import GroundingModel
from groundkit.engine.recorder import Recorder
from groundkit.recipes import get_recipe, list_recipes
from groundkit.registry import adapter_names, get_adapter_class
from groundkit.verify import verify_checkpoint

__all__ = ["PORTABLE_RECIPES", "AdapterContract", "Builder", "ContractCase", "build_case", "check_captures_every_layer",
           "check_declares_the_protocol", "check_encodes_with_declared_shapes", "check_grounds_with_recipe",
           "check_layers_are_canonical", "check_refuses_code_in_weight_files", "check_registered",
           "check_verify", "check_verify_cli", "contract_cases", "family_checkpoints", "load_case"]

Builder = Callable[[Path], Path]  # root folder -> a tiny checkpoint folder (options in its groundkit.yaml)
PORTABLE_RECIPES = ("nuetzel2025-fast", "vilouras2024-fast")  # every family must run them (fast: 2-5 steps)
PHRASES = ["small left pleural effusion", "cardiomegaly"]


@dataclass
class ContractCase:
    """One family's tiny checkpoint, loaded: what every check takes."""

    name: str  # the adapter's registry name
    folder: Path
    checkpoints_file: Path  # a checkpoints.yaml naming it tiny-<name>
    model: GroundingModel


def load_case(name: str, folder: str | os.PathLike) -> ContractCase:
    """Name the folder in a checkpoints.yaml beside it (adapter, path, default recipe) and load it on the CPU."""
    folder = Path(folder)
    if name not in adapter_names():
        raise LookupError(f"adapter {name!r} is not registered (registered: {', '.join(adapter_names())}): install the "
                          "package whose groundkit.adapters entry point names it (pip install -e .)")
    recipe = get_adapter_class(name).default_recipe
    cfg = folder.parent / "checkpoints.yaml"
    cfg.write_text(f"checkpoints:\n  tiny-{name}:\n    adapter: {name}\n    path: {folder}\n    recipe: {recipe}\n"
                   "    source: built by the adapter contract suite\n")
    return ContractCase(name, folder, cfg, load(f"tiny-{name}", device="cpu", checkpoints_file=cfg))


def family_checkpoints(name: str) -> dict[str, Builder]:
    """A registered family's tiny checkpoint builders: ``tiny_checkpoints()`` of the ``contract`` module in the
    package of its adapter class (e.g. ``groundkit.families.monai_ldm.contract``)."""
    cls = get_adapter_class(name)
    is_package = getattr(sys.modules.get(cls.__module__), "__path__", None) is not None
    package = cls.__module__ if is_package else cls.__module__.rpartition(".")[0]
    target = f"{package}.contract" if package else "contract"
    try:
        contract = importlib.import_module(target)
    except ModuleNotFoundError as e:
        if e.name != target and not target.startswith(f"{e.name}."):
            raise  # the contract module exists, an import inside it fails
        raise LookupError(f"model family {name!r} ({cls.__module__}.{cls.__qualname__}) has no tiny checkpoint builder "
                          f"for the contract suite: add {target}.tiny_checkpoints() -> {{layout: builder(root) -> folder}}"
                          ) from None
    builders = dict(contract.tiny_checkpoints())
    if not builders:
        raise LookupError(f"{target}.tiny_checkpoints() returned no builder for model family {name!r}")
    return builders


def contract_cases() -> list[str]:
    """``family:layout`` for every registered adapter and every layout its family builds (``family:`` when it has no
    builder, so that its fixture fails with what to add instead of the family going unchecked)."""
    cases = []
    for name in adapter_names():
        try:
            cases += [f"{name}:{layout}" for layout in family_checkpoints(name)]
        except LookupError:
            cases.append(f"{name}:")
    return cases


def build_case(case: str, root: Path) -> ContractCase:
    """Build and load one ``family:layout`` of :func:`contract_cases` under ``root``."""
    name, _, layout = case.partition(":")
    builders = family_checkpoints(name)  # raises, naming what to add, for a family without builders
    if layout not in builders:
        raise LookupError(f"model family {name!r} has no tiny layout {layout!r} (has: {', '.join(builders)})")
    return load_case(name, builders[layout](root))


def _image(seed: int = 0, h: int = 70, w: int = 60) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.random((h, w)).astype(np.float32) * 0.3
    img[10:30, 30:50] += 0.6
    return img


# ------------------------------------------------------------------ the checks
def check_declares_the_protocol(case: ContractCase) -> None:
    a = case.model.adapter
    cls = type(a)
    assert isinstance(a, Adapter), f"{cls.__name__} lacks members of groundkit.core.adapter.Adapter"
    assert cls.name == case.name, f"{cls.__name__}.name is {cls.name!r}, registered as {case.name!r}"
    assert isinstance(cls.options, dict) and all(isinstance(k, str) and isinstance(v, str) and v for k, v in cls.options.items()), \
        "options: a mapping {option: what it means} of non-empty text"
    assert cls.default_recipe in list_recipes(), f"default_recipe {cls.default_recipe!r} is not a registered recipe"
    assert cls.detect(case.folder), f"{cls.__name__}.detect() does not recognise its own checkpoint {case.folder}"


def check_registered(case: ContractCase) -> None:
    assert case.name in adapter_names() and get_adapter_class(case.name) is type(case.model.adapter)
    assert case.model.entry.adapter == case.name


def check_verify(case: ContractCase) -> None:
    comps = type(case.model.adapter).components(case.model.entry.adapter_entry())
    assert comps and all(isinstance(c, Component) for c in comps)
    assert all(f.is_relative_to(case.folder) for c in comps for f in c.files[:1]), "a family's files lie in its folder"
    assert any(c.kind == "weights" and c.build is not None for c in comps), "at least one deep-checked weights file"
    report = verify_checkpoint(f"tiny-{case.name}", checkpoints_file=case.checkpoints_file)
    assert report.ok, report.text()
    assert report.keys and all(k.ok for k in report.keys)


def check_verify_cli(case: ContractCase) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "groundkit", "checkpoints", "verify", f"tiny-{case.name}",
                           "--checkpoints-file", str(case.checkpoints_file)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def check_layers_are_canonical(case: ContractCase) -> None:
    layers = case.model.adapter.cross_attention_layers()
    assert layers and [info.index for info in layers] == list(range(len(layers)))
    assert len({info.name for info in layers}) == len(layers)
    assert all(info.resolution > 0 and info.block in ("down", "mid", "up") for info in layers)
    assert all(info.attention in ("attn1", "attn2") for info in layers)


def check_encodes_with_declared_shapes(case: ContractCase) -> None:
    a = case.model.adapter
    pixels, geo = a.preprocess(_image())
    assert isinstance(geo, Geometry) and pixels.shape[0] == 1 and pixels.shape[-2:] == (a.image_size, a.image_size)
    mean, std = a.encode_posterior(pixels)
    assert mean.shape == (1, a.latent_channels, a.latent_size, a.latent_size)
    assert std is None or std.shape == mean.shape
    text = a.encode_text(PHRASES)
    assert isinstance(text, TextBatch)
    b, n, d = text.embeddings.shape
    assert b == 2 and len(text.tokens) == len(text.word_ids) == 2 and all(len(t) == n for t in text.tokens)
    assert text.special.shape == (2, n) and len(text.word_spans[0]) == 4
    assert a.encode_unconditional().shape == (1, n, d)
    out = a.unet(mean.repeat(2, 1, 1, 1), torch.tensor([500, 10]), text.embeddings)
    assert out.shape == (2, a.latent_channels, a.latent_size, a.latent_size) and torch.isfinite(out).all()


def check_captures_every_layer(case: ContractCase) -> None:
    """Every layer reports post-softmax attention (all tokens summed: one at every pixel); capture changes nothing."""
    a = case.model.adapter
    layers = a.cross_attention_layers()
    rec = Recorder(layers)
    text = a.encode_text(["left pleural effusion"])
    n = text.embeddings.shape[1]
    mean, _ = a.encode_posterior(a.preprocess(_image())[0])
    with a.capture(rec), rec.armed([("p", 0)], torch.ones(1, 1, n, device=a.device)), torch.no_grad():
        a.unet(mean, torch.tensor([300]), text.embeddings)
    for info in layers:
        m = rec.maps[(("p", 0), info.index)]
        assert m.shape == (1, info.resolution, info.resolution), f"layer {info.name}: map {tuple(m.shape)}"
        torch.testing.assert_close(m, torch.ones_like(m), atol=1e-4, rtol=0)
    with torch.no_grad():
        before = a.unet(mean, torch.tensor([300]), text.embeddings)
        with a.capture(Recorder(layers)):
            during = a.unet(mean, torch.tensor([300]), text.embeddings)
    torch.testing.assert_close(before, during, atol=1e-5, rtol=1e-4)


def check_grounds_with_recipe(case: ContractCase, recipe: str) -> None:
    """A portable recipe grounds end to end (short windows; a 16x16 selector falls back to every attn2 layer on a
    model served too small to have 16x16 layers)."""
    model = case.model
    spec = get_recipe(recipe)
    inversion = spec.mode == "ddim-inversion"  # a DDIM inversion walks the whole grid: a coarse grid keeps it short
    over: dict[str, Any] = {"grid": "stride:50", "steps": (2, 4)} if inversion else {"steps": (48, 50)}
    if "16x16" in str(spec.layers) and not any(i.resolution == 16 and i.attention == "attn2" for i in model.layers):
        over["layers"] = "attn2"
    g = model.ground(_image(), PHRASES[0], recipe, category="Pleural Effusion", **over)
    crop = g.heatmap_crop
    assert crop.shape == (model.adapter.image_size,) * 2 and np.isfinite(crop).all() and 0 <= crop.min() and crop.max() <= 1
    assert g.heatmap.shape == (70, 60) and g.mask.shape == (70, 60)
    assert g.info["unet_calls"] > 0 and g.info["recipe_provenance"]["name"] == recipe


class _Payload:
    """Unpickling this runs a shell command that creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def check_refuses_code_in_weight_files(case: ContractCase, root: Path) -> None:
    """Each declared weights file, replaced (in a copy) by a pickle that would run code: loading fails, names the
    file, and the code never runs (weights are read with safetensors or ``torch.load(weights_only=True)``)."""
    comps = type(case.model.adapter).components(case.model.entry.adapter_entry())
    files = [next((f for f in c.files if f.is_file()), None) for c in comps if c.kind == "weights"]
    files = [f for f in files if f is not None and f.is_relative_to(case.folder)]
    assert files, "the family declares no weights file inside its folder"
    for k, file in enumerate(files):
        copy = root / f"copy{k}" / case.folder.name
        shutil.copytree(case.folder, copy)
        target, marker = copy / file.relative_to(case.folder), root / f"pwned{k}"
        target.unlink()
        torch.save({"weight": torch.zeros(1), "payload": _Payload(marker)}, target)
        with pytest.raises(Exception) as caught:
            load(copy, device="cpu")
        assert not marker.exists(), f"loading {target} ran the code pickled in it"
        assert target.name in str(caught.value), f"the error does not name {target.name}: {caught.value}"


# ------------------------------------------------------------------ the test class a family's tests subclass
class AdapterContract:
    """Every contract check as a test. Subclass it (name it ``Test...``), set ``adapter_name`` and override the
    classmethod ``build_checkpoint``; or override the ``contract`` fixture to give several checkpoints (as groundkit's own
    tests do, parametrized over every registered adapter)."""

    adapter_name: ClassVar[str] = ""

    @classmethod
    def build_checkpoint(cls, root: Path) -> Path:
        """Write a tiny checkpoint of your family under ``root`` (random weights, your published layout, options
        in its groundkit.yaml) and return its folder."""
        raise NotImplementedError(f"{cls.__name__}: override the classmethod build_checkpoint(root) -> a checkpoint folder")

    @pytest.fixture(scope="class")
    @classmethod
    def contract(cls, tmp_path_factory) -> ContractCase:
        """The loaded case every test takes, built once per class."""
        if not cls.adapter_name:
            raise ValueError(f"{cls.__name__}.adapter_name: expected the family's registered adapter name")
        return load_case(cls.adapter_name, cls.build_checkpoint(tmp_path_factory.mktemp(cls.adapter_name)))

    def test_declares_the_protocol(self, contract):
        check_declares_the_protocol(contract)

    def test_is_registered_under_its_name(self, contract):
        check_registered(contract)

    def test_declared_files_verify(self, contract):
        check_verify(contract)

    def test_verify_through_the_cli(self, contract):
        check_verify_cli(contract)

    def test_layers_are_canonical(self, contract):
        check_layers_are_canonical(contract)

    def test_encodes_with_declared_shapes(self, contract):
        check_encodes_with_declared_shapes(contract)

    def test_captures_every_layer(self, contract):
        check_captures_every_layer(contract)

    @pytest.mark.parametrize("recipe", PORTABLE_RECIPES)
    def test_grounds_with_portable_recipes(self, contract, recipe):
        check_grounds_with_recipe(contract, recipe)

    def test_refuses_code_in_weight_files(self, contract, tmp_path):
        check_refuses_code_in_weight_files(contract, tmp_path)
