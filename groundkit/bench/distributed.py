"""Scale-out under torchrun: rank and world size, process-group set-up, barriers, and the sharding of
a dataset into whole images per rank (so that each image's per-image caches stay on one rank)."""
from __future__ import annotations

import datetime as _dt
import os
import sys
from collections import OrderedDict
from typing import Any, Iterable, Sequence

__all__ = ["barrier", "cap_threads", "dist_info", "gather_counts", "group_by_image", "init_distributed", "rank_device",
           "shard_samples"]


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


def _set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)
    try:  # allowed only before the first inter-op parallel work of the process
        torch.set_num_interop_threads(n)
    except RuntimeError:
        pass


def cap_threads(device: str | None, threads: int | None) -> int | None:
    """CPU threads of this process; returns the number set, or None when nothing was changed.

    ``threads`` (the user's ``--threads``) is applied as given, on any device. Otherwise, under a multi-rank
    launch on CPU (WORLD_SIZE > 1, not using CUDA) the ranks of one node share its cores: each rank keeps
    at most max(1, cores // LOCAL_WORLD_SIZE) threads (cores: its CPU affinity) whatever OMP_NUM_THREADS says (K ranks x N threads
    on fewer cores thrash: 2 ranks x 2 threads on 2 cores ran > 50x slower), and says so in one stderr
    line. On CUDA, and in a single process, nothing changes."""
    import torch

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = f"rank {os.environ.get('RANK', '0')}/{world}"
    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be >= 1, got {threads}")
        _set_threads(threads)
        if world > 1:
            print(f"{rank}: CPU threads {threads} (--threads {threads})", file=sys.stderr, flush=True)
        return threads
    if world <= 1 or (torch.cuda.is_available() and (device is None or str(device).startswith("cuda"))):
        return None
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", world)))
    cores = _cores()
    cap = max(1, cores // local)
    before = torch.get_num_threads()
    _set_threads(min(before, cap))
    n = torch.get_num_threads()  # what the rank really uses
    omp = os.environ.get("OMP_NUM_THREADS")
    why = f"{cores} cores / {local} local ranks"
    if before > cap:
        what = f"capped at {n} ({why}; " + (f"OMP_NUM_THREADS={omp} ignored)" if omp else f"torch default {before} ignored)")
    else:
        what = f"{n}, within the cap of {cap} ({why}" + (f"; OMP_NUM_THREADS={omp})" if omp else ")")
    print(f"{rank}: CPU threads {what} - set --threads to override", file=sys.stderr, flush=True)
    return n


def _cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. a SLURM allocation), else os.cpu_count()."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


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
