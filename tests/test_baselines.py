"""The model-free baselines on their own (the demo's quality tests use them on a held-out split, in the slow tier)."""
import numpy as np
import pytest

import groundkit as gk
from groundkit.core.geometry import Geometry
from groundkit.bench.baselines import baseline_map, baseline_row


def test_baseline_maps():
    centre = baseline_map("centre", 8)
    assert centre.shape == (8, 8) and centre.argmax() in (27, 28, 35, 36) and np.allclose(centre, centre.T)
    assert (baseline_map("uniform", 4) == 1).all()
    with pytest.raises(ValueError, match="baseline"):
        baseline_map("corner", 4)


@pytest.mark.parametrize("recipe", ["nuetzel2025", "vilouras2024"])
def test_baseline_rows_score_under_the_recipes_protocol(recipe):
    r = gk.get_recipe(recipe)
    geo = Geometry(64, 64, 64)
    box = [(16, 16, 32, 32)]  # the centre of the frame: the centre prior beats the uniform map there
    centre, uniform = baseline_row("centre", r, geo, box), baseline_row("uniform", r, geo, box)
    assert set(centre) == set(uniform) and centre
    assert centre["cnr"] > uniform["cnr"]
