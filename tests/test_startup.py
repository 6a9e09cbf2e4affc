"""Fast start: `import groundkit` and `groundkit --help` must not import the heavy libraries (torch,
diffusers, transformers); they load when a model is loaded, and only then. Checked in fresh processes,
since the test session itself has imported torch long ago. (Times are printed by benchmarks/startup.py.)"""
from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "diffusers", "transformers", "monai", "spacy")


def _heavy_after(code: str) -> set[str]:
    probe = code + "\nimport sys\nprint('HEAVY=' + ','.join(m for m in %r if m in sys.modules))" % (HEAVY,)
    p = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    line = next(ln for ln in p.stdout.splitlines() if ln.startswith("HEAVY="))
    return {m for m in line[len("HEAVY="):].split(",") if m}


def test_import_groundkit_imports_no_heavy_library():
    assert _heavy_after("import groundkit\ngroundkit.list_adapters\ngroundkit.RECIPES") == set()


def test_help_imports_no_heavy_library():
    code = ("import sys\nsys.argv = ['groundkit', '--help']\nfrom groundkit.cli import main\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n")
    assert _heavy_after(code) == set()


def test_loading_a_model_does_import_torch():
    """The probe itself can fail: loading the demo pulls torch in (so the two tests above are not vacuous)."""
    assert "torch" in _heavy_after("import groundkit as gk\ngk.load('demo', device='cpu')")


def test_importing_a_family_imports_only_torch():
    """Every built-in family's adapter module is imported to resolve and detect checkpoints; diffusers,
    transformers and MONAI come in only when a family loads a model that needs them."""
    code = ("import groundkit.families.diffusers_sd.adapter\nimport groundkit.families.monai_ldm.adapter\n"
            "import groundkit.families.diffusers_sd.capture")
    assert _heavy_after(code) == {"torch"}


def test_grounding_with_a_diffusers_checkpoint_does_not_import_monai():
    """A result records library versions from package metadata: importing MONAI only to read its version cost
    about 1.2 s of every demo run."""
    code = ("import numpy as np, groundkit as gk\nm = gk.load('demo', device='cpu')\n"
            "g = m.ground(np.zeros((64, 64), np.float32), 'left pleural effusion')\n"
            "assert g.info['versions']['monai'] and g.info['versions']['diffusers']")
    assert "monai" not in _heavy_after(code)
