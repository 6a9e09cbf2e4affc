"""Scale-out under torchrun: rank and world size, process-group set-up, barriers, and the sharding of
a dataset into whole images per rank (so that each image's per-image caches stay on one rank)."""
from __future__ import annotations

import datetime as _dt
import os
from collections import OrderedDict
from typing import Any, Iterable, Sequence

__all__ = ["barrier", "dist_info", "gather_counts", "group_by_image", "init_distributed", "rank_device", "shard_samples"]


def dist_info() -> tuple[int, int]:
    """(rank, world size) of the initialised default process group, else (0, 1)."""
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover - torch built without distributed
        return 0, 1
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed(device: str | None = None) -> bool:
    """Initialise the default process group from torchrun's environment when WORLD_SIZE > 1 and
    nothing is initialised yet: nccl when the ranks use CUDA, gloo otherwise. Returns True when it
    initialised the group (the caller then destroys it). The timeout (GROUNDKIT_DIST_TIMEOUT seconds,
    default 24 h) bounds how long ranks wait for the slowest shard at the final barrier."""
    import torch
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available() or dist.is_initialized():
        return False
    use_cuda = torch.cuda.is_available() and (device is None or str(device).startswith("cuda"))
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    timeout = _dt.timedelta(seconds=float(os.environ.get("GROUNDKIT_DIST_TIMEOUT", 24 * 3600)))
    dist.init_process_group("nccl" if use_cuda else "gloo", timeout=timeout)
    return True


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def gather_counts(*counts: int) -> list[int]:
    """Sum small integer counters over the ranks (and wait for every rank: a barrier)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return list(counts)
    got: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(got, list(counts))
    return [sum(g[i] for g in got) for i in range(len(counts))]


def rank_device(device: str | None, world: int) -> str | None:
    """Under torchrun each rank takes the GPU of its LOCAL_RANK."""
    import torch

    if world > 1 and torch.cuda.is_available() and (device is None or device == "cuda"):
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


def shard_samples(samples: Sequence[Any], rank: int, world: int) -> list[Any]:
    """The samples of ``rank``: whole images (all phrases of one image stay on one rank, so the
    per-image caches work), assigned in dataset order to the rank with the fewest samples so far
    (ties: lowest rank). Deterministic; the shards are disjoint and cover every sample."""
    if world <= 1:
        return list(samples)
    groups = group_by_image(samples)
    load = [0] * world
    mine: list[Any] = []
    for group in groups.values():
        r = min(range(world), key=lambda k: (load[k], k))
        load[r] += len(group)
        if r == rank:
            mine.extend(group)
    return mine


def group_by_image(samples: Iterable[Any]) -> OrderedDict[str, list[Any]]:
    groups: OrderedDict[str, list[Any]] = OrderedDict()
    for s in samples:
        groups.setdefault(str(s.image_path), []).append(s)
    return groups
