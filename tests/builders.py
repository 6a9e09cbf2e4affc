"""Checkpoint folders in the real published layouts, with random weights (nothing can be downloaded).

Used by the tests (tiny sizes, seconds) and by benchmark scripts (``tiny=False``: real architecture sizes).
The builders live with their families (``groundkit.families.*.testing``), so that a plugin's own tests
can use them; this module gathers them. Import with ``tests/`` on ``sys.path`` (tests/conftest.py does that): ``from builders import build_monai_bundle``.

* :func:`build_monai_bundle` - MONAI model-zoo bundle ``cxr_image_synthesis_latent_diffusion_model``
  (``configs/inference.json`` in the bundle's real format, ``models/*.pth`` state dicts of the OLD
  ``generative`` (monai-generative) classes, plus a CLIP ``text_encoder/`` and ``tokenizer/`` standing in
  for SD-2.1-base's, which the bundle itself only references by hub id).
* :func:`build_sd_cxrbert` - diffusers tree of the SD-1.5 U-Net fine-tuned with CXR-BERT
  (``unet/``, ``unet_ema/``, ``vae/``, ``scheduler/``, ``text_encoder/`` = CXR-BERT-specialized layout,
  ``tokenizer/`` = WordPiece vocab).
* :func:`build_cxrbert_folder`, :func:`build_plain_bert_folder` - text encoder folders on their own.
* :func:`build_clip_tokenizer_files`, :func:`wordpiece_vocab` - tokenizer vocabularies.

Random weights: every parameter that the architecture zero-initialises (MONAI's ``zero_module`` output
convolutions, ...) is re-drawn from N(0, 0.02) so that every block influences the output.
"""
from __future__ import annotations

from groundkit.core.testing import write_json as _write_json  # noqa: F401 - used by tests
from groundkit.families.diffusers_sd.testing import (  # noqa: F401
    SD15_SCHEDULER,
    SD15_UNET_FULL,
    SD15_UNET_TINY,
    SD15_VAE_FULL,
    SD15_VAE_TINY,
    build_sd_cxrbert,
)
from groundkit.families.monai_ldm.testing import (  # noqa: F401
    MONAI_AE_FULL,
    MONAI_AE_TINY,
    MONAI_SCHEDULER,
    MONAI_UNET_FULL,
    MONAI_UNET_TINY,
    build_monai_bundle,
)
from groundkit.families.monai_ldm.testing import inference_json as _inference_json  # noqa: F401
from groundkit.families.text.testing import (  # noqa: F401
    CLIP_TEXT_FULL,
    CLIP_TEXT_TINY,
    CXRBERT_FULL,
    CXRBERT_TINY,
    REPORT_WORDS,
    build_clip_text_encoder,
    build_clip_tokenizer_files,
    build_cxrbert_folder,
    build_plain_bert_folder,
    bytes_to_unicode,
    cxrbert_state_dict,
    wordpiece_vocab,
)
from groundkit.families.text.testing import write_wordpiece_tokenizer as _write_wordpiece_tokenizer  # noqa: F401


def served_at(tree, image_size: int, tmp_path_factory):
    """A copy of a checkpoint tree whose groundkit.yaml serves it at ``image_size`` (smaller latents: faster tests)."""
    import shutil

    root = tmp_path_factory.mktemp(f"served{image_size}") / "ckpt"
    shutil.copytree(tree, root)
    (root / "groundkit.yaml").write_text(f"image_size: {image_size}\n")
    return root
