"""Which noisy latents the U-Net sees, at which timestep (docs/protocols.md §3).

Pure tensor math over an adapter's `NoiseSchedule`; no capture here. Randomness is derived from
(seed, grid step) so that a step's noise does not depend on which other steps are in the window:
a window evaluated from an ablation store equals the same window grounded directly.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from groundkit.core.types import NoiseSchedule

UnetFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def step_generator(seed: int, stream: int, step: int = 0) -> torch.Generator:
    """A CPU generator for one (seed, stream, step); CPU so that results match across devices."""
    words = np.random.SeedSequence([seed, stream, step]).generate_state(2, dtype=np.uint32)
    return torch.Generator("cpu").manual_seed(int(words[0]) << 32 | int(words[1]))


STREAM_GT_NOISE = 1
STREAM_TEXT_PASS = 2
STREAM_POSTERIOR = 3


def gt_noise(seed: int, step: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Fresh Gaussian noise of grid step ``step`` of the gt-noised pass."""
    return torch.randn(shape, generator=step_generator(seed, STREAM_GT_NOISE, step), dtype=torch.float32)


def posterior_latent(mean: torch.Tensor, std: torch.Tensor | None, seed: int, step: int) -> torch.Tensor:
    """z0 of grid step ``step``: a fresh sample mean + std * eps of the VAE posterior (the published
    GT-noised pass samples the posterior at every step), seeded per (seed, step); the mean when
    ``std`` is None."""
    if std is None:
        return mean
    eps = torch.randn(tuple(mean.shape), generator=step_generator(seed, STREAM_POSTERIOR, step), dtype=torch.float32)
    return mean + std * eps


def add_noise(z0: torch.Tensor, noise: torch.Tensor, abar: float) -> torch.Tensor:
    return (abar**0.5) * z0 + ((1.0 - abar) ** 0.5) * noise


def ddim_move(schedule: NoiseSchedule, z: torch.Tensor, pred: torch.Tensor, t_from: int, abar_to: float) -> torch.Tensor:
    """One deterministic DDIM move (eta = 0) from timestep ``t_from`` to cumulative alpha ``abar_to``.

    Used both ways: sampling (abar_to = alpha of the previous timestep) and inversion (abar_to =
    alpha of the next, noisier timestep). Computed in float32 whatever the U-Net's dtype."""
    a = schedule.alphas_cumprod[t_from].to(torch.float32)
    x0, eps = schedule.split(z.float(), pred.float(), a)
    return (abar_to**0.5) * x0 + ((1.0 - abar_to) ** 0.5) * eps


def inversion_trajectory(
    unet: UnetFn, schedule: NoiseSchedule, z0: torch.Tensor, timesteps: list[int], keep: set[int], null: torch.Tensor
) -> dict[int, torch.Tensor]:
    """Deterministic DDIM inversion along ``timesteps`` (ascending), following the unconditional
    prediction; returns z_i for every grid index i in ``keep``. Stops at the last kept index, since
    later steps cost time and change nothing."""
    last = max(keep)
    out: dict[int, torch.Tensor] = {}
    z = z0.float()
    ts = torch.tensor(timesteps[: last + 1], device=z.device)  # one transfer, not one per step
    for i in range(last + 1):
        if i in keep:
            out[i] = z
        if i == last:
            break
        t = timesteps[i]
        pred = unet(z, ts[i : i + 1].expand(z.shape[0]), null)
        z = ddim_move(schedule, z, pred, t, float(schedule.alphas_cumprod[timesteps[i + 1]]))
    return out


def previous_abar(schedule: NoiseSchedule, timesteps: list[int], i: int) -> float:
    """Cumulative alpha that DDIM sampling moves to after grid index ``i`` (descending grid)."""
    if i + 1 < len(timesteps):
        return float(schedule.alphas_cumprod[timesteps[i + 1]])
    return float(schedule.final_alpha_cumprod)
