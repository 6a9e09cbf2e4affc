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
    assert {"monai-ldm", "diffusers-sd", "toy-family"} <= set(gk.list_adapters()), \
        "the example plugin is not installed: pip install -e examples/plugin-family"
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


def test_adapter_base_answers_the_optional_capabilities():
    """A family without a capability still answers every protocol member (the engine never probes with hasattr):
    a deterministic encoder gives std None, the unconditional context is the empty phrase's, compile() is a clear
    error naming the family, and a family that defines neither encoder is refused when its class is made."""
    import torch

    from groundkit.core.adapter import AdapterBase

    class Deterministic(AdapterBase):
        name = "deterministic-family"

        def encode_image(self, pixels):
            return pixels * 2

        def encode_text(self, phrases):
            return type("Text", (), {"embeddings": torch.full((len(phrases), 3, 4), float(len(phrases[0])))})()

    a = Deterministic()
    mean, std = a.encode_posterior(torch.ones(1, 1, 2, 2))
    assert std is None and torch.equal(mean, torch.full((1, 1, 2, 2), 2.0))
    assert torch.equal(a.encode_unconditional(), torch.zeros(1, 3, 4))  # encode_text([""]): len("") == 0
    assert a.networks() == {}
    with pytest.raises(NotImplementedError, match="deterministic-family"):
        a.compile()
    with pytest.raises(TypeError, match="encode_posterior.*or encode_image"):
        type("NoEncoder", (AdapterBase,), {})


def test_compile_goes_through_the_adapter(tmp_path):
    """GroundingModel.compile() calls the adapter's declared compile(): the toy family cannot, and says so."""
    case = build_case("toy-family:toy", tmp_path)
    with pytest.raises(NotImplementedError, match="toy-family"):
        case.model.compile()
    assert not case.model.compiled
