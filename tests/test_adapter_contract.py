"""The Adapter contract (groundkit.testing), checked on every registered model family, as timm tests every listed
model and diffusers' PipelineTesterMixin every pipeline with tiny dummy components.

The cases are every registered adapter times every layout its family folder builds (``contract.tiny_checkpoints()``
beside the adapter: diffusers-sd serves Nuetzel's SD-1.5 + CXR-BERT, RadEdit, RoentGen's SD 1.x + CLIP and SD 2.x
v-prediction + CLIP). ``toy-family`` is the example plugin of ``examples/plugin-family``, installed through its
``groundkit.adapters`` entry point (``pip install -e examples/plugin-family``, as .ci/run does); its own tests run
the same suite through a subclass of ``AdapterContract``.
"""
from __future__ import annotations

import pytest

import groundkit as gk
from groundkit.testing import AdapterContract, build_case, contract_cases, family_checkpoints

CASES = contract_cases()


def test_the_suite_sees_the_plugin_and_the_builtins():
    assert {"monai-ldm", "diffusers-sd", "toy-family"} <= set(gk.list_adapters())
    assert not [c for c in CASES if c.endswith(":")], "a registered family has no tiny checkpoint builder"
    assert {"diffusers-sd:sd15-cxrbert", "diffusers-sd:radedit", "monai-ldm:bundle", "toy-family:toy"} <= set(CASES)


def test_a_family_without_builders_is_named_with_what_to_add(monkeypatch):
    import groundkit.testing as gt

    class Lonely(gk.registry.get_adapter_class("toy-family")):  # a family whose module has no contract module
        pass

    Lonely.__module__ = "lonely_family_for_tests.adapter"
    monkeypatch.setattr(gt, "get_adapter_class", lambda name: Lonely)
    with pytest.raises(LookupError, match=r"'lonely'.*add lonely_family_for_tests\.contract\.tiny_checkpoints\(\)"):
        family_checkpoints("lonely")
    with pytest.raises(LookupError, match="no tiny checkpoint builder"):
        build_case("lonely:x", None)


class TestRegisteredFamilies(AdapterContract):
    """Every contract check on every case of CASES (the fixture builds each once for the whole class)."""

    @pytest.fixture(scope="class", params=CASES)
    @classmethod
    def contract(cls, request, tmp_path_factory):
        return build_case(request.param, tmp_path_factory.mktemp(request.param.replace(":", "-")))
