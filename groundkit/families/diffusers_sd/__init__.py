"""Stable-Diffusion-layout diffusers checkpoints (SD 1.x/2.x U-Nets) with a BERT-family or CLIP text encoder."""
from groundkit.families.diffusers_sd.adapter import DiffusersSDAdapter

__all__ = ["DiffusersSDAdapter"]
