"""The package importable from a checkout that has not installed it yet (a run from the groundkit repository's root
includes these tests): the family then fails the suite's registration checks, naming what to install, instead of
the whole test run stopping at an import error. Installed (``pip install -e .``), this changes nothing."""
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.append(_ROOT)  # after site-packages: an installed copy wins
