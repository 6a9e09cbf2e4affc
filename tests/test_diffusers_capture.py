"""The diffusers capture processor: diffusers' stock ``AttnProcessor`` with the attention probabilities recorded.

Checked on a tiny random U-Net against the stock processor (same outputs) and against softmax(Q K^T * scale)
computed here from the layer's own projections (same maps, float32 whatever the model's dtype).
"""
from __future__ import annotations

import threading

import pytest
import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention, AttnProcessor

from groundkit.families.diffusers_sd.capture import CaptureAttnProcessor, diffusers_capture


class _Sink:
    def __init__(self, layers):
        self.layers, self.maps = layers, {}

    def record(self, name, probs):
        self.maps.setdefault(name, []).append(probs)


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        layers_per_block=1, norm_num_groups=8, cross_attention_dim=24, attention_head_dim=8,
    ).eval()


def _inputs(n_tokens=7):
    g = torch.Generator().manual_seed(1)
    return torch.randn(2, 4, 8, 8, generator=g), torch.tensor([500, 20]), torch.randn(2, n_tokens, 24, generator=g)


def _attn2_inputs(unet):
    """Each attn2 layer's (hidden_states, encoder_hidden_states, attention_mask) as the U-Net passes them."""
    seen, hooks = {}, []
    for name, m in unet.named_modules():
        if name.endswith("attn2"):
            def hook(mod, args, kwargs, name=name):
                seen[name] = (args[0], kwargs["encoder_hidden_states"], kwargs.get("attention_mask"))
            hooks.append(m.register_forward_pre_hook(hook, with_kwargs=True))
    return seen, hooks


def _reference_probs(attn, x, ctx, bias=None):
    """float32 softmax(Q K^T * scale [+ bias]) per head, (batch, heads, queries, keys)."""
    b, n, _ = x.shape
    q = attn.to_q(x).float().view(b, n, attn.heads, -1).permute(0, 2, 1, 3)
    k = attn.to_k(ctx).float().view(b, ctx.shape[1], attn.heads, -1).permute(0, 2, 1, 3)
    scores = torch.einsum("bhqd,bhkd->bhqk", q, k) * attn.scale
    if bias is not None:
        scores = scores + bias[:, None, None, :]
    return scores.softmax(-1)


@pytest.mark.parametrize("masked", [False, True])
def test_unet_with_capture_equals_stock_processor_and_maps_are_the_softmax(unet, masked):
    z, t, ctx = _inputs()
    mask = torch.tensor([[1, 1, 1, 1, 0, 0, 0], [1] * 7]) if masked else None
    names = [n for n, _ in unet.named_modules() if n.endswith("attn2")]
    original = dict(unet.attn_processors)
    with torch.no_grad():
        unet.set_attn_processor(AttnProcessor())
        stock = unet(z, t, ctx, encoder_attention_mask=mask).sample
        unet.set_attn_processor(dict(original))  # diffusers empties the dict it is given
        sink = _Sink(dict.fromkeys(names))
        seen, hooks = _attn2_inputs(unet)
        try:
            with diffusers_capture(unet, sink):
                out = unet(z, t, ctx, encoder_attention_mask=mask).sample
        finally:
            for h in hooks:
                h.remove()
    assert unet.attn_processors == original  # restored
    # the stock processor computes scale * Q K^T in one baddbmm: the last bit differs, nothing more
    torch.testing.assert_close(out, stock, atol=1e-5, rtol=0)
    assert sorted(sink.maps) == sorted(names) and all(len(v) == 1 for v in sink.maps.values())
    modules = dict(unet.named_modules())
    bias = None if mask is None else (1 - mask.float()) * -10000.0  # diffusers' additive mask
    for name in names:
        x, c, _ = seen[name]
        got = sink.maps[name][0]
        assert got.dtype == torch.float32 and got.shape == (2, modules[name].heads, x.shape[1], 7)
        torch.testing.assert_close(got, _reference_probs(modules[name], x, c, bias), atol=1e-6, rtol=0)
    if masked:
        assert max(m[0][0, :, :, 4:].max().item() for m in sink.maps.values()) < 1e-6  # masked tokens get nothing


def _layer(dtype=torch.float32):
    torch.manual_seed(2)
    return Attention(32, cross_attention_dim=24, heads=4, dim_head=8).eval().to(dtype)


def test_one_layer_matches_stock_processor_and_leaves_the_layer_alone():
    attn = _layer()
    x, ctx = torch.randn(2, 16, 32), torch.randn(2, 5, 24)
    sink = _Sink({"l": None})
    with torch.no_grad():
        out = CaptureAttnProcessor(sink, "l")(attn, x, ctx)
        stock = AttnProcessor()(attn, x, ctx)
        ref = _reference_probs(attn, x, ctx)
    torch.testing.assert_close(out, stock, atol=1e-6, rtol=0)
    torch.testing.assert_close(sink.maps["l"][0], ref, atol=1e-6, rtol=0)
    assert "get_attention_scores" not in vars(attn)  # nothing patched on the shared layer


def test_bf16_layer_records_float32_probabilities():
    """The softmax runs in float32 (recorded as such); the output uses those probabilities cast to bf16."""
    attn = _layer(torch.bfloat16)
    x, ctx = torch.randn(1, 16, 32).bfloat16(), torch.randn(1, 5, 24).bfloat16()
    sink = _Sink({"l": None})
    with torch.no_grad():
        out = CaptureAttnProcessor(sink, "l")(attn, x, ctx)
        ref = _reference_probs(attn, x, ctx)
        v = attn.to_v(ctx).view(1, 5, 4, 8).permute(0, 2, 1, 3)
        manual = attn.to_out[0]((ref.bfloat16() @ v).permute(0, 2, 1, 3).reshape(1, 16, 32))
    got = sink.maps["l"][0]
    assert got.dtype == torch.float32 and out.dtype == torch.bfloat16
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(out.float(), manual.float(), atol=2e-2, rtol=0)  # bf16 rounding of the matmuls


def test_concurrent_calls_record_their_own_probabilities():
    """One shared layer, called from two threads with different inputs: each call records its own maps (nothing
    is swapped on the layer for the duration of a call)."""
    attn = _layer()
    inputs = [(torch.randn(1, 16, 32), torch.randn(1, 5, 24)) for _ in range(2)]
    results = {}

    def work(i):
        with torch.no_grad():
            for _ in range(20):
                s = _Sink({"l": None})
                CaptureAttnProcessor(s, "l")(attn, *inputs[i])
                results.setdefault(i, []).append(s.maps["l"][0])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    with torch.no_grad():
        refs = [_reference_probs(attn, *inputs[i]) for i in range(2)]
    for i in range(2):
        for got in results[i]:
            torch.testing.assert_close(got, refs[i], atol=1e-6, rtol=0)
