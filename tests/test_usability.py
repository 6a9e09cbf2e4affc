"""What a new user meets: portable recipes, recipe provenance, honest tables on non-MS-CXR data, the test
command's summary line, a consistent CLI, and results that are pleasant in a notebook."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import tomllib
from typer.testing import CliRunner

import groundkit as gk
from groundkit.bench.configs import Config
from groundkit.bench.tables import build_tables
from groundkit.cli import app
from groundkit.recipes import THRESHOLDS, describe_layers, list_recipes, parse_layers, resolve_layers

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture(scope="module")
def demo():
    return gk.load("demo", device="cpu")


# ------------------------------------------------------------------ 1. portable recipes
def test_published_layers_are_selected_by_what_they_are(tiny_monai_bundle, tiny_sd_cxrbert):
    monai = gk.load(tiny_monai_bundle, device="cpu")
    assert monai.recipe("vilouras2024").layers == (3, 4, 6, 7)  # the four 16x16 layers of the MONAI LDM, as published
    assert parse_layers("16x16") == "16x16" and parse_layers("up:16x16") == "up:16x16" and parse_layers("3,4,6,7") == (3, 4, 6, 7)
    sd = gk.load(tiny_sd_cxrbert, device="cpu")
    assert sd.recipe("vilouras2024").layers == tuple(i.index for i in sd.layers if i.resolution == 16)
    assert sd.recipe("nuetzel2025", layers="up:16x16").layers == tuple(i.index for i in sd.layers if i.resolution == 16 and i.block == "up")
    with pytest.raises(ValueError, match="selects no cross-attention layer"):
        resolve_layers("4x4", monai.layers)
    with pytest.raises(ValueError, match="out of range"):
        monai.recipe("vilouras2024", layers="99")


@pytest.fixture(scope="module")
def only_cross(tmp_path_factory):
    """A tiny SD-1.5 + CXR-BERT U-Net built with only_cross_attention=True: every block's attn1 attends to the text."""
    from builders import build_sd_cxrbert

    tree = build_sd_cxrbert(tmp_path_factory.mktemp("only_cross"), tiny=True, unet_overrides={"only_cross_attention": True})
    (tree / "groundkit.yaml").write_text("image_size: 64\n")
    return gk.load(tree, device="cpu")


def test_selectors_name_which_attention_of_a_block(only_cross):
    """attn2 = each block's cross-attention (what the published code hooks); attn1 attends to the text only in
    only_cross_attention blocks; all = both. The published recipes take attn2 only."""
    m = only_cross
    attn1 = tuple(i.index for i in m.layers if i.attention == "attn1")
    attn2 = tuple(i.index for i in m.layers if i.attention == "attn2")
    assert len(attn2) == 16 and len(attn1) == 15 and all(i.name.endswith(".attn1") for i in m.layers if i.index in attn1)
    assert parse_layers("attn2") == "attn2" and parse_layers("UP:16x16:attn2") == "up:16x16:attn2"
    assert m.recipe("nuetzel2025").layers == attn2 and m.recipe("nuetzel2025", layers="all").layers is None
    assert m.recipe("nuetzel2025", layers="attn1").layers == attn1
    assert m.recipe("nuetzel2025", layers="8x8:attn2").layers == tuple(i for i in attn2 if m.layers[i].resolution == 8)
    assert m.recipe("nuetzel2025", layers="up:attn2").layers == tuple(i for i in attn2 if m.layers[i].block == "up")
    with pytest.raises(ValueError, match="an attention"):
        parse_layers("attn3")


def test_result_json_records_the_layer_choice(only_cross, tmp_path):
    img = np.random.default_rng(0).random((70, 60)).astype(np.float32)
    faithful = only_cross.ground(img, "small left pleural effusion", "nuetzel2025-fast")
    every = only_cross.ground(img, "small left pleural effusion", "nuetzel2025-fast", layers="all")
    assert faithful.info["layers"] == {"spec": "attn2", "indices": list(faithful.recipe.layers), "attn1": 0, "attn2": 16,
                                       "text_attending_layers": 31}
    assert every.info["layers"]["spec"] == "all" and (every.info["layers"]["attn1"], every.info["layers"]["attn2"]) == (15, 16)
    assert not np.allclose(faithful.heatmap_crop, every.heatmap_crop)  # the attn1 layers move the map
    saved = json.loads((faithful.save(tmp_path / "out") / "result.json").read_text())
    assert saved["layers"]["spec"] == "attn2" and saved["layers"]["attn1"] == 0


def test_the_demo_default_keeps_the_layers_it_was_chosen_with(demo):
    """demo-default was chosen (on validation) as up:16x16 when a selector counted every text-attending layer:
    it must select the same layers, and so give the same maps, as those layers named by index."""
    chosen_then = tuple(i.index for i in demo.layers if i.block == "up" and i.resolution == 16)
    assert demo.recipe().name == "demo-default" and demo.recipe().layers == chosen_then
    img = str(Path(gk.__file__).parent / "assets" / "demo" / "sample.png")
    g = demo.ground(img, "small left pleural effusion", steps=(49, 50))
    by_index = demo.ground(img, "small left pleural effusion", steps=(49, 50), layers=chosen_then)
    np.testing.assert_array_equal(g.heatmap_crop, by_index.heatmap_crop)


def test_published_recipes_run_on_the_demo(demo):
    img = str(Path(gk.__file__).parent / "assets" / "demo" / "sample.png")
    for name in ("vilouras2024", "nuetzel2025"):
        over = {"grid": "stride:50", "steps": (2, 4)} if name == "vilouras2024" else {"steps": (48, 50)}
        g = demo.ground(img, "small left pleural effusion", name, **over)
        assert np.isfinite(g.heatmap_crop).all() and g.info["recipe_provenance"]["name"] == name


def test_cli_steps_flag_and_its_old_spelling(tmp_path):
    for flag in ("--steps", "--timesteps"):
        res = runner.invoke(app, ["run", flag, "48:50", "--no-progress", "-o", str(tmp_path / flag.strip("-"))])
        assert res.exit_code == 0, res.output
        assert json.loads((tmp_path / flag.strip("-") / "result.json").read_text())["recipe"]["steps"] == [48, 50]


# ------------------------------------------------------------------ 2. provenance
def test_published_names_mean_published_settings_and_fields_say_where_they_came_from(demo):
    pub = demo.resolve("nuetzel2025")
    assert pub.recipe.steps == (10, 50) and pub.layers_spec == "attn2"  # not the checkpoint's overrides
    assert pub.recipe.layers == tuple(i.index for i in demo.layers if i.attention == "attn2")
    assert set(pub.provenance.values()) == {"recipe"}
    default = demo.resolve()
    assert default.recipe.name == "demo-default" and default.recipe.name in list_recipes()
    assert {k for k, v in default.provenance.items() if v == "checkpoint"} == set(demo.entry.overrides)
    mine = demo.resolve("nuetzel2025", steps=(45, 50))
    assert mine.provenance["steps"] == "user" and mine.provenance["layers"] == "recipe"
    assert describe_layers(None) == "all" and describe_layers((3, 4)) == "3,4"


def test_tables_never_say_none_where_all_is_meant():
    cfg = Config("m", "m", "", "diffusers-sd", dict(gk.get_recipe("nuetzel2025").override(steps=(45, 50)).to_dict()),
                 "abc", "nuetzel", ("miou_fgbg", "cnr", "top1", "auroc"))
    rows = [{"checkpoint": "m", "recipe_digest": "abc", "sample_id": f"s{i}", "category": "Edema", "error": None,
             "miou_fgbg": 0.5, "cnr": 1.0, "top1": 1.0, "auroc": 0.8} for i in range(3)]
    md = build_tables(rows, [cfg]).markdown()
    assert "None" not in md and "steps=45:50 (published 10:50)" in md


# ------------------------------------------------------------------ 3. synthetic results are not compared with MS-CXR papers
def test_synthetic_tables_do_not_subtract_the_papers():
    cfg = Config("demo", "demo", "", "diffusers-sd", dict(gk.get_recipe("nuetzel2025").to_dict()), "abc", "nuetzel",
                 ("miou_fgbg", "cnr", "top1", "auroc"))
    rows = [{"checkpoint": "demo", "recipe_digest": "abc", "sample_id": f"s{i}", "category": c, "error": None,
             "miou_fgbg": 0.4, "cnr": 0.9, "top1": 0.5, "auroc": 0.7} for i, c in enumerate(["Edema", "Cardiomegaly"] * 2)]
    synthetic = build_tables(rows, [cfg], dataset="synthetic")
    md = synthetic.markdown()
    ours = [sec for sec in synthetic.sections if not sec.title.startswith(("Reference", "Published"))]
    assert "Δ" not in md and not any("published" in " ".join(map(str, sec.header)) for sec in ours)
    assert "Reference: published numbers on MS-CXR (not comparable with this dataset)" in md
    assert all(not b["reference"] for b in synthetic.bars)  # no "published" markers on the charts
    mscxr = build_tables(rows, [cfg], dataset="mscxr").markdown()
    assert "Δ" in mscxr and "Reference: published numbers on MS-CXR" not in mscxr


# ------------------------------------------------------------------ 4. the test command prints its summary
def test_pytest_config_does_not_silence_the_summary():
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "-q" not in cfg.get("addopts", "").split()  # `python -m pytest -q` then still ends with "N passed"
    ci = (REPO / ".ci" / "run").read_text()
    readme = (REPO / "README.md").read_text()
    assert "python -m pytest -q" in ci and "python -m pytest -q" in readme


# ------------------------------------------------------------------ 6. one consistent CLI
def test_version_and_help_list_every_accepted_value():
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"groundkit {gk.__version__}"
    for cmd in ("run", "benchmark", "ablate", "report"):
        text = runner.invoke(app, [cmd, "--help"], terminal_width=60).output
        flat = " ".join(text.split())
        assert "--checkpoint" in flat and "--progress" in flat, cmd
        for name in list_recipes():
            if not name.endswith("-default"):
                assert name in flat, (cmd, name)
        long_lines = [ln for ln in text.splitlines() if len(ln) > 80]
        assert long_lines, "help is not cut at 80 columns when the terminal is narrow or piped"
    run_help = " ".join(runner.invoke(app, ["run", "--help"]).output.split())
    assert all(t in run_help for t in THRESHOLDS) and "--steps" in run_help and "--timesteps" in run_help
    for cmd in ("benchmark", "ablate"):
        flat = " ".join(runner.invoke(app, [cmd, "--help"]).output.split())
        assert "--dataset" in flat and "default: mscxr when --csv is given, synthetic when --data is" in flat


def test_every_option_has_help():
    import click
    import typer.main

    cli = typer.main.get_command(app)

    def walk(cmd, path):
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                yield from walk(sub, path + [name])
        else:
            for p in cmd.params:
                if isinstance(p, click.Option):
                    yield path, p

    missing = [(" ".join(path), p.opts) for path, p in walk(cli, []) if not (p.help or "").strip()]
    assert not missing


def test_catalog_commands():
    rec = runner.invoke(app, ["recipes", "list"])
    assert rec.exit_code == 0 and "vilouras2024-fast" in rec.output and "published" in rec.output
    show = runner.invoke(app, ["checkpoints", "show", "demo"])
    assert show.exit_code == 0, show.output
    assert re.search(r"^\s+0\s+(down|mid|up)\s+\d+x\d+\s+\S+attn", show.output, re.M)
    assert "loading demo ..." in show.output  # said before the first long silence (stderr is mixed in here)
    listed = runner.invoke(app, ["checkpoints", "list"])
    assert "recipe:  demo-default (nuetzel2025 + overrides)" in listed.output  # the folder's groundkit.yaml counts


def test_checkpoint_default_recipes_are_named_before_first_use():
    """A fresh process knows `demo-default` without loading the demo first."""
    import subprocess
    import sys

    env = {"PYTHONWARNINGS": "ignore", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    out = subprocess.run([sys.executable, "-m", "groundkit", "recipes", "show", "demo-default"], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"^name\s+demo-default$", out.stdout, re.M) and "layers" in out.stdout
    code = "import groundkit as gk; print('demo-default' in gk.list_recipes(checkpoints=True))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env).stdout.strip() == "True"


def test_run_scores_only_the_bundled_phrase(tmp_path):
    """Another phrase on the bundled image is not scored against the bundled finding's box."""
    res = runner.invoke(app, ["run", "--text", "enlarged cardiac silhouette", "--out", str(tmp_path), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["phrase"] == "enlarged cardiac silhouette" and "metrics" not in result


# ------------------------------------------------------------------ 7. notebooks
def test_grounding_in_a_notebook(demo, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    meta = json.loads((Path(gk.__file__).parent / "assets" / "demo" / "sample.json").read_text())
    g = demo.ground(str(Path(gk.__file__).parent / "assets" / "demo" / "sample.png"), meta["phrase"])
    text = repr(g)
    assert "\n" not in text and len(text) < 300 and "array" not in text and meta["phrase"] in text
    metrics = g.evaluate(meta["boxes"])
    assert "cnr" in repr(g) and metrics == g.metrics
    out = g.save(tmp_path / "g")
    saved = json.loads((out / "result.json").read_text())
    assert saved["boxes"] == [list(map(float, b)) for b in meta["boxes"]] and saved["metrics"]["cnr"] == pytest.approx(metrics["cnr"])
    ax = g.plot()
    texts = [t.get_text() for t in ax.texts]
    assert "R" in texts and "L" in texts  # patient right on the image left
    assert ax.patches, "the ground-truth box is drawn"
    cbar_label = ax.figure.axes[-1].get_ylabel()
    assert "cross-attention" in cbar_label
    g.show()
