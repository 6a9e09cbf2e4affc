"""The Adapter protocol: the one seam between a model family and everything generic.

An adapter knows how to load one family from its published on-disk layout, turn an image into a
latent and a phrase into a context, run one U-Net call, where its cross-attention layers are and how
to report their attention to an :class:`~groundkit.core.types.AttentionSink`. It also declares, without
loading anything, which options a checkpoint entry may set for it and which files it needs
(:class:`Component`), so that ``groundkit checkpoints verify`` works for every registered family,
a third party's included.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch

from groundkit.core.geometry import Geometry
from groundkit.core.types import AttentionSink, LayerInfo, NoiseSchedule, TextBatch

# (network built from its config on the meta device, the file's keys) -> (renamed state dict, n renamed, dropped keys)
Normalize = Callable[[torch.nn.Module, dict[str, Any]], tuple[dict[str, Any], int, list[str]]]


@dataclass(frozen=True)
class Component:
    """One part of a checkpoint on disk, as the family's loader reads it and ``checkpoints verify`` checks it.

    ``files`` are candidates: the first that exists is the one used (e.g. ``model.safetensors`` or
    ``pytorch_model.bin`` or a shard index). ``kind`` is "weights" (completeness, sha256 and, with ``build``,
    every key and shape compared with the network built from its config, after ``normalize``), "config"
    (read and validated by ``check``) or "file". ``hint`` says where a missing file comes from."""

    label: str
    files: tuple[Path, ...]
    kind: str = "file"
    hint: str = ""
    build: Callable[[set[str]], torch.nn.Module] | None = None
    normalize: Normalize | None = None
    check: Callable[[], str | None] | None = None  # raises ValueError when the file is unusable; may return a note
    note: str = ""  # an informational line instead of files (e.g. "pixel space: no VAE")


@runtime_checkable
class Adapter(Protocol):
    """What the engine, the registry, ``checkpoints verify`` and the CLI need from a model family: every member
    they use is declared here, and they call each one unconditionally (never probing with ``hasattr``).

    Optional capabilities (a posterior, an unconditional embedding of its own, ``torch.compile``, named
    networks) have a default in :class:`AdapterBase`; subclass it and override what your family has.
    Register a class with the ``groundkit.adapters`` entry point (or ``groundkit.register_adapter``)."""

    name: ClassVar[str]  # the family's registry name, e.g. "diffusers-sd"
    default_recipe: ClassVar[str]  # the recipe a checkpoint of this family uses unless it names one
    options: ClassVar[Mapping[str, str]]  # checkpoint options this family reads -> what each one means

    image_size: int  # side of the square model input (crop space)
    latent_size: int  # side of the U-Net's input grid
    latent_channels: int
    device: torch.device
    dtype: torch.dtype
    schedule: NoiseSchedule

    @classmethod
    def detect(cls, path: Path) -> bool:
        """True if ``path`` is a folder laid out the way this family publishes its weights."""
        ...

    @classmethod
    def components(cls, entry: Mapping[str, Any]) -> list[Component]:
        """The files this family needs for a checkpoint entry (``path`` + options), without loading them."""
        ...

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any], device: str | torch.device, dtype: torch.dtype) -> Adapter:
        ...

    def preprocess(self, image: Any) -> tuple[torch.Tensor, Geometry]:
        """Float image (H, W) in [0, 1] -> model-space pixels (1, C, S, S) and the crop geometry."""
        ...

    def encode_posterior(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Model-space pixels -> scaled latent posterior (mean, std); std None when deterministic."""
        ...

    def encode_text(self, phrases: list[str]) -> TextBatch:
        ...

    def encode_unconditional(self) -> torch.Tensor:
        """The empty prompt's context (1, N, D), encoded the way the family's published pipeline does."""
        ...

    def unet(self, z_t: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        ...

    def cross_attention_layers(self) -> list[LayerInfo]:
        ...

    def capture(self, sink: AttentionSink) -> AbstractContextManager[AttentionSink]:
        """Within the context, every forward reports the sink's layers' attention to ``sink.record``."""
        ...

    def compile(self, **options: Any) -> None:
        """Run the U-Net's forward through ``torch.compile`` in place (same layer names, same capture seams);
        what ``GroundingModel.compile`` and ``--compile`` call. Raises NotImplementedError when the family cannot."""
        ...

    def networks(self) -> dict[str, torch.nn.Module]:
        """The loaded networks by role ("unet", "autoencoder", "text_encoder"): for parameter counts and for
        comparing a weights file with what was loaded (benchmarks/full_size_smoke.py)."""
        ...


class AdapterBase:
    """Defaults for the protocol's optional capabilities, so a family implements only what it has.

    Why a base class rather than ``hasattr`` checks in the engine: a third-party family that follows the
    protocol must not break ``compile()`` or BBM because a member is missing; here each member has an answer
    that is either right for most families or a clear error naming the family. A subclass must define
    ``encode_posterior`` or ``encode_image`` (one is built from the other)."""

    name: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.encode_posterior is AdapterBase.encode_posterior and cls.encode_image is AdapterBase.encode_image:
            raise TypeError(f"{cls.__name__}: an adapter must define encode_posterior(pixels) -> (mean, std | None) "
                            "or encode_image(pixels) -> latent (a deterministic encoder)")

    def encode_posterior(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A deterministic encoder: ``encode_image``'s latent and no standard deviation."""
        return self.encode_image(pixels), None

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """The posterior mean (what a deterministic pass uses)."""
        return self.encode_posterior(pixels)[0]

    def encode_unconditional(self) -> torch.Tensor:
        """The empty phrase encoded like any other (families whose pipeline masks it differently override)."""
        return self.encode_text([""]).embeddings  # type: ignore[attr-defined]

    def compile(self, **options: Any) -> None:
        raise NotImplementedError(f"model family {self.name or type(self).__name__!r} cannot compile its U-Net: its "
                                  "adapter does not implement compile(**options); run without --compile")

    def networks(self) -> dict[str, torch.nn.Module]:
        return {}
