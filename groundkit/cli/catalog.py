"""`groundkit checkpoints list|show|verify` and `groundkit recipes list|show`: what can be run, before running it."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from groundkit.cli import common as C

checkpoints_app = typer.Typer(no_args_is_help=True, help="List, inspect and verify named checkpoints.")
recipes_app = typer.Typer(no_args_is_help=True, help="List and inspect recipes.")


@checkpoints_app.command("list")
def checkpoints_list(checkpoints_file: Optional[Path] = C.checkpoints_file_option()):
    """Every checkpoint in checkpoints.yaml: adapter, default recipe, files, source, and whether it is here."""
    from groundkit.registry import load_checkpoints, with_folder_config

    try:
        entries = load_checkpoints(checkpoints_file)
    except (FileNotFoundError, ValueError) as e:
        C.fail(str(e))
    for e in entries.values():
        if e.path.is_dir():
            try:  # the folder's groundkit.yaml may add overrides (the checkpoint's own default recipe)
                e = with_folder_config(e)
            except (OSError, ValueError) as err:
                typer.echo(f"{e.name}: its folder config cannot be read: {err}")
        state = "present" if e.present else ("missing: " + ", ".join(e.missing_files() or [str(e.path)]))
        typer.echo(f"{e.name}\n  adapter: {e.adapter}\n  recipe:  {e.default_recipe}{f' ({e.recipe} + overrides)' if e.overrides else ''}\n"
                   f"  path:    {e.path}\n  status:  {state}")
        if e.files:
            typer.echo(f"  files:   {', '.join(e.files)}")
        if e.source:
            typer.echo(f"  source:  {e.source}")
    _plugins()


def _plugins() -> None:
    """Installed adapter plugins (entry points), and why a broken one is skipped."""
    from groundkit.registry import plugin_status

    rows = plugin_status()
    if rows:
        typer.echo("adapter plugins (entry-point group groundkit.adapters):")
    for r in rows:
        state = "ok" if not r["error"] else f"BROKEN, skipped: {r['error']}"
        typer.echo(f"  {r['name']}  (package {r['package']}, {r['target']}): {state}")


@checkpoints_app.command("show")
def checkpoints_show(name: str = typer.Argument(..., help="checkpoint name or folder"),
                     device: Optional[str] = C.device_option(),
                     checkpoints_file: Optional[Path] = C.checkpoints_file_option()):
    """A checkpoint's options, default recipe and cross-attention layers (index, U-Net part, resolution)."""
    from groundkit.core.categories import CATEGORIES
    from groundkit.recipes import describe_layers

    model = C.load_model(name, device or "cpu", "float32", checkpoints_file)
    e, r = model.entry, model.resolve()
    typer.echo(f"{e.name}  (adapter {e.adapter}, folder {e.path})")
    typer.echo(f"  input {model.adapter.image_size} px, latent {model.adapter.latent_channels}x{model.adapter.latent_size}"
               f"x{model.adapter.latent_size}, {model.adapter.schedule.num_train_timesteps} training timesteps")
    typer.echo(f"  default recipe: {r.recipe.name}" + (f" (= {e.recipe} with {e.overrides})" if e.overrides else ""))
    typer.echo(f"  cross-attention layers ({len(model.layers)}):")
    for info in model.layers:
        typer.echo(f"    {info.index:>3}  {info.block:<4}  {info.resolution}x{info.resolution}  {info.name}")
    typer.echo(f"  default layers: {describe_layers(r.recipe.layers)} (selected by {r.layers_spec!r})")
    typer.echo(f"  categories (--category): {', '.join(CATEGORIES)}")


@checkpoints_app.command("verify")
def checkpoints_verify(name: str = typer.Argument(..., help="checkpoint name or folder"),
                       checkpoints_file: Optional[Path] = C.checkpoints_file_option(),
                       deep: bool = typer.Option(True, "--deep/--no-deep", help="also read every weights file's keys and shapes")):
    """Check a checkpoint's files: presence, sizes, sha256 (when recorded), key sets; say what to fetch."""
    from groundkit.verify import verify_checkpoint

    try:
        report = verify_checkpoint(name, checkpoints_file=checkpoints_file, deep=deep)
    except (FileNotFoundError, ValueError) as e:
        C.fail(str(e))
    typer.echo(report.text())
    if not report.ok:
        raise typer.Exit(1)


@recipes_app.command("list")
def recipes_list():
    """Every registered recipe, one line each (published ones marked)."""
    from groundkit.recipes import PUBLISHED, describe_layers, get_recipe, list_recipes
    from groundkit.registry import register_checkpoint_recipes

    register_checkpoint_recipes()
    for name in list_recipes():
        r = get_recipe(name)
        mark = "published" if name in PUBLISHED else ("fast" if name.endswith("-fast") else "checkpoint default")
        typer.echo(f"{name:<20} {mark:<18} {r.mode:<15} grid {r.grid:<10} steps {r.steps[0]}:{r.steps[1]:<5} "
                   f"layers {describe_layers(r.layers):<8} tokens {r.tokens:<8} {r.threshold}" + (f" + BBM {r.bbm}" if r.bbm else ""))


@recipes_app.command("show")
def recipes_show(name: str = typer.Argument(..., help="recipe name")):
    """Every field of one recipe."""
    from groundkit.recipes import describe_layers, get_recipe
    from groundkit.registry import register_checkpoint_recipes

    try:
        register_checkpoint_recipes()
        r = get_recipe(name)
    except ValueError as e:
        C.fail(str(e))
    for k, v in r.to_dict().items():
        typer.echo(f"{k:<15} {describe_layers(v) if k == 'layers' else v}")
