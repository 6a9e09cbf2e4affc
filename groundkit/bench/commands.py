"""CLI commands of the benchmark runner and the ablation (registered on the main typer app)."""
from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    pass
