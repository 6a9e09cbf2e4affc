"""The MONAI chest X-ray LDM family (model-zoo bundle) with a CLIP text encoder."""
from groundkit.families.monai_ldm.adapter import MonaiLDMAdapter

__all__ = ["MonaiLDMAdapter"]
