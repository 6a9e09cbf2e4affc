"""The errors a checkpoint file or folder can raise, in a module of their own: the loader
(:mod:`groundkit.core.safeload`) and the folder confinement (:mod:`groundkit.core.confine`) both raise them,
and neither should import the other just for an exception class."""
from __future__ import annotations

__all__ = ["CheckpointError", "UnsafeCheckpointError", "CheckpointMismatchError"]


class CheckpointError(ValueError):
    """A weight file is unreadable (truncated, corrupt, or not a state dict)."""


class UnsafeCheckpointError(CheckpointError):
    """A ``torch.save`` file needs more than tensors to load; groundkit refuses to unpickle it."""


class CheckpointMismatchError(CheckpointError):
    """A state dict does not fit the module it is meant for (missing/unexpected keys, wrong shapes)."""
