"""One registry shape for every named choice (docs/registries.md): adapters, recipes, thresholds, token filters, BBM
variants, metric protocols and datasets all have register_* / get_* / list_* (on gk.* too), the same error for an
unknown name, an entry-point group each, and built-ins that are declared rather than registered by an import.

A third party's threshold and protocol, one file each (tests/plugins/gk_top_quartile.py, tests/plugins/gk_hit_rate.py,
declared in tests/plugins/groundkit_test_extras-0.1.dist-info), are used end to end: a recipe names them, a grounding
is evaluated under the protocol and a benchmark writes its rows and tables.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from builders import served_at
from test_benchmark import write_mscxr

import groundkit as gk
from groundkit.bench.datasets import load_dataset
from groundkit.bench.runner import run_benchmark
from groundkit.core.registry import PluginError, PluginWarning, Registry
from groundkit.engine.tokens import Picked
from groundkit.recipes import Recipe

REPO = Path(__file__).resolve().parents[1]
PLUGINS = REPO / "tests" / "plugins"
FAST = {"steps": "48:50", "tokens": "all"}

pytestmark = pytest.mark.usefixtures("one_thread")

BUILTINS = {
    "list_thresholds": {"otsu", "multiotsu", "gmm", "none"},
    "list_protocols": {"vilouras", "nuetzel"},
    "list_token_filters": {"all", "lexical", "disease", "words", "start"},
    "list_bbm_variants": {"mixture", "linear", "quadratic"},
    "list_datasets": {"mscxr", "synthetic"},
    "list_adapters": {"monai-ldm", "diffusers-sd"},
    "list_recipes": {"vilouras2024", "nuetzel2025", "nuetzel2025-bbm", "vilouras2024-fast", "nuetzel2025-fast"},
}


@pytest.mark.parametrize("lister", sorted(BUILTINS))
def test_every_kind_lists_its_built_ins(lister):
    names = getattr(gk, lister)()
    assert BUILTINS[lister] <= set(names) and names == sorted(names)


@pytest.mark.parametrize("getter, kind", [
    ("get_threshold", "threshold"), ("get_protocol", "protocol"), ("get_token_filter", "token filter"),
    ("get_bbm_variant", "BBM variant"), ("get_dataset", "dataset"), ("get_adapter", "adapter"), ("get_recipe", "recipe"),
])
def test_an_unknown_name_is_one_error_that_lists_what_exists(getter, kind):
    with pytest.raises(ValueError) as info:
        getattr(gk, getter)("no-such-thing")
    msg = str(info.value)
    lister = "list_" + ("recipes" if kind == "recipe" else getter[4:] + "s")
    assert msg.startswith(f"unknown {kind} 'no-such-thing'; known: ")
    assert msg.endswith(", ".join(getattr(gk, lister)()))


@pytest.mark.parametrize("field, value, kind", [
    ("threshold", "median", "threshold"), ("protocol", "dice", "protocol"), ("bbm", "cubic", "BBM variant"),
    ("tokens", "nouns", "token filter"), ("tokens", "nouns:heart", "token filter"),
])
def test_a_recipe_field_names_only_registered_choices(field, value, kind):
    with pytest.raises(ValueError, match=rf"recipe field '{field}': unknown {kind} '{value.split(':')[0]}'; known: "):
        Recipe(**{field: value})
    with pytest.raises(ValueError, match=rf"recipe field '{field}'"):
        gk.get_recipe("nuetzel2025").override(**{field: value})


def test_nothing_is_registered_or_imported_by_importing_groundkit():
    """Built-ins are a declared table: importing groundkit (and listing) imports no implementation."""
    code = ("import sys, groundkit as gk\n"
            "from groundkit.choices import THRESHOLDS, PROTOCOLS, TOKEN_FILTERS, BBM_VARIANTS, DATASETS\n"
            "from groundkit.recipes import RECIPES\n"
            "names = [gk.list_thresholds(), gk.list_protocols(), gk.list_token_filters(), gk.list_bbm_variants(), "
            "gk.list_datasets(), gk.list_recipes()]\n"
            "loaded = [m for m in ('groundkit.engine.thresholds', 'groundkit.evaluation.protocols', 'groundkit.engine.token_filters',"
            " 'groundkit.engine.bbm_variants', 'groundkit.bench.datasets', 'torch') if m in sys.modules]\n"
            "print(loaded, [r.names() == sorted(r.builtins) for r in (THRESHOLDS, PROTOCOLS, TOKEN_FILTERS, BBM_VARIANTS, DATASETS)])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[] [True, True, True, True, True]"


def test_list_recipes_reads_no_file_unless_asked(monkeypatch, tmp_path):
    monkeypatch.setenv("GROUNDKIT_CHECKPOINTS", str(tmp_path / "missing.yaml"))
    assert "nuetzel2025" in gk.list_recipes()  # no checkpoints.yaml read
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        gk.list_recipes(checkpoints=True)  # asked: reads it (and here it is not there)


def test_a_broken_plugin_of_any_kind_is_skipped_with_one_warning(tmp_path, monkeypatch):
    info = tmp_path / "gk_broken-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: gk-broken\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[groundkit.thresholds]\nbroken = gk_broken_mod:fn\nmedian = gk_median_mod:fn\n")
    (tmp_path / "gk_broken_mod.py").write_text("import no_such_module_for_groundkit_tests\n")
    (tmp_path / "gk_median_mod.py").write_text("import numpy as np\n\ndef fn(h, recipe, raw=None):\n    return h, h >= np.median(h)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry("threshold", group="groundkit.thresholds", builtins={"none": "groundkit.engine.thresholds:none"})
    assert {"broken", "median", "none"} <= set(reg.names())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            with pytest.raises(PluginError, match="gk-broken.*no_such_module_for_groundkit_tests"):
                reg.get("broken")
    assert len([w for w in caught if issubclass(w.category, PluginWarning)]) == 1
    h = np.arange(9.0).reshape(3, 3)
    assert reg.get("median")(h, None)[1].sum() == 5 and reg.get("none") is not None  # the others still work


def test_a_token_filter_and_a_bbm_variant_registered_at_run_time(tiny_sd_cxrbert, tmp_path_factory):
    def last_word(view, args):
        k = view.all_words[-1]
        return Picked(view.word_pos[k], [k])

    gk.register_token_filter("last-word", last_word)
    gk.register_bbm_variant("a-only", lambda A, M, s: A + 0 * M)
    try:
        model = gk.load(str(served_at(tiny_sd_cxrbert, 64, tmp_path_factory)), device="cpu")
        g = model.ground(np.random.default_rng(0).random((64, 64)), "left pleural effusion", "nuetzel2025",
                         steps="48:50", tokens="last-word", bbm="a-only", bbm_steps="48:50")
        assert g.info["tokens"]["words"] == ["effusion"] and g.recipe.bbm == "a-only"
    finally:
        gk.choices.TOKEN_FILTERS.unregister("last-word")
        gk.choices.BBM_VARIANTS.unregister("a-only")
    with pytest.raises(ValueError, match="unknown token filter 'last-word'"):
        Recipe(tokens="last-word")


@pytest.fixture
def extras(monkeypatch):
    """The third party's package installed (on sys.path with its dist-info)."""
    monkeypatch.syspath_prepend(str(PLUGINS))
    assert "top-quartile" in gk.list_thresholds() and "hit-rate" in gk.list_protocols()


def test_a_plugin_threshold_and_protocol_end_to_end(extras, tiny_sd_cxrbert, tmp_path_factory, tmp_path):
    ckpt = str(served_at(tiny_sd_cxrbert, 64, tmp_path_factory))
    recipe = gk.get_recipe("nuetzel2025").override(threshold="top-quartile", protocol="hit-rate", **FAST)
    model = gk.load(ckpt, device="cpu")
    g = model.ground(np.random.default_rng(0).random((64, 64)), "left pleural effusion", recipe)
    assert abs(g.mask_crop.mean() - 0.25) < 0.05  # the plugin's threshold made the mask
    metrics = g.evaluate([(0, 0, 32, 64)])
    assert set(gk.get_protocol("hit-rate").metrics) <= set(metrics) and metrics["mask_fraction"] == pytest.approx(g.mask_crop.mean())

    csv = write_mscxr(tmp_path / "mscxr")
    gk.register_dataset("tiny-mscxr", lambda **kw: load_dataset("mscxr", csv=csv, images=tmp_path / "mscxr"))
    try:
        samples = load_dataset("tiny-mscxr")
    finally:
        gk.choices.DATASETS.unregister("tiny-mscxr")
    res = run_benchmark([ckpt], recipe, None, samples, tmp_path / "bench", progress=False, dataset={"kind": "tiny-mscxr"})
    ok = [r for r in res.rows if not r["error"]]
    assert ok and all(r["protocol"] == "hit-rate" and r["hit"] in (0.0, 1.0) and 0 < r["mask_fraction"] < 0.5 for r in ok)
    tables = (tmp_path / "bench" / "tables.md").read_text()
    assert "mask_fraction" in tables and "Table I layout" not in tables and "Table 1 layout" not in tables  # no paper layout
    summary = next(iter(json.loads((tmp_path / "bench" / "summary.json").read_text()).values()))
    assert summary["protocol"] == "hit-rate" and set(summary["macro"]) == {"hit", "mask_fraction"}
    assert all(isinstance(v, float) and math.isfinite(v) for v in summary["macro"].values())
