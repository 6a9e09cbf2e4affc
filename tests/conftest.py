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
# a third party's threshold and protocol installed through entry points (tests/plugins/*.dist-info), used by
# tests/test_registries.py; the example model family is a real package (examples/plugin-family, pip-installed)
_PLUGINS = os.path.join(_HERE, "plugins")
if _PLUGINS not in sys.path:
    sys.path.insert(0, _PLUGINS)

import pytest


# ------------------------------------------------------------------ test tiers (docs/testing.md)
SLOW_TESTS = os.path.join(_HERE, "slow_tests.txt")


def _slow_entries() -> list[tuple[int, str]]:
    """(line number, node-id prefix) of every entry of tests/slow_tests.txt; ``#`` starts a comment."""
    with open(SLOW_TESTS, encoding="utf-8") as f:
        rows = [(n, line.split("#", 1)[0].strip()) for n, line in enumerate(f, 1)]
    return [(n, entry) for n, entry in rows if entry]


def _matches(nodeid: str, entry: str) -> bool:
    """``entry`` names this test, its class, its file, or (with a ``[``) a prefix of its parameter ids."""
    if not nodeid.startswith(entry):
        return False
    return len(nodeid) == len(entry) or "[" in entry or nodeid[len(entry)] in "[:"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Mark ``slow`` the tests that tests/slow_tests.txt lists (before ``-m`` selects), so test functions carry no
    tier of their own. An entry that matches nothing in a file that was collected is reported, not ignored."""
    entries = _slow_entries()
    used = set()
    for item in items:
        for n, entry in entries:
            if _matches(item.nodeid, entry):
                item.add_marker(pytest.mark.slow)
                used.add(n)
    narrowed = config.getoption("keyword", "") or any("::" in str(a) for a in config.args)
    collected_files = {item.nodeid.split("::", 1)[0] for item in items}
    stale = [f"line {n}: {entry}" for n, entry in entries if n not in used and entry.split("::", 1)[0] in collected_files]
    if stale and not narrowed:
        import warnings

        warnings.warn(pytest.PytestConfigWarning("tests/slow_tests.txt names tests that do not exist (renamed or removed?): "
                                                 + "; ".join(stale)))


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module's U-Net work: on a shared 2-core runner, OpenMP threads that get
    descheduled make tiny forwards several times slower, and one thread gives identical float reductions in
    every run (as each torchrun rank has with OMP_NUM_THREADS=1). Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
