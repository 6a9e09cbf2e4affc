"""The toy family passes groundkit's adapter contract suite: the same checks every built-in family passes.

Run with ``python -m pytest -q`` in this folder (after ``pip install -e .``), or from the groundkit repository's
root, whose test run includes this folder.
"""
from __future__ import annotations

from groundkit_toy_family.contract import build

from groundkit.testing import AdapterContract


class TestToyFamily(AdapterContract):
    adapter_name = "toy-family"  # what pyproject.toml's groundkit.adapters entry point registers

    @classmethod
    def build_checkpoint(cls, root):
        return build(root / "toy")
