"""The built-in Bimodal Bias Merging variants (Nuetzel eq. 2-4; declared in
:data:`groundkit.choices.BBM_VARIANTS`): blend the map A with the bias-product map M by weight s. Written with
operators only, so that the same function runs on numpy arrays and on the float16 tensors that replicate the
published arithmetic (see :func:`groundkit.engine.postprocess.bbm`)."""
from __future__ import annotations

__all__ = ["linear", "mixture", "quadratic"]


def mixture(A, M, s: float):
    """(1-s)^2 A + 2 s (1-s) (M + A + M*A)/2 + s^2 M (eq. 2, the published default), in the published order."""
    return 2 * (1 - s) * s * ((M + A + (M * A)) / 2) + ((1 - s) ** 2) * A + (s**2) * M


def linear(A, M, s: float):
    """s M + (1-s) A (eq. 3)."""
    return s * M + (1 - s) * A


def quadratic(A, M, s: float):
    """(1-s)^2 A + 2 s (1-s) M*A + s^2 M (eq. 4)."""
    return 2 * (1 - s) * s * (M * A) + ((1 - s) ** 2) * A + (s**2) * M
