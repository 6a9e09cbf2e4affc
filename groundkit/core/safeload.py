"""Loading checkpoints without ever unpickling arbitrary Python objects.

Every weight file groundkit reads goes through :func:`load_state_dict`:

* ``.safetensors`` files are read with :mod:`safetensors` (no code execution possible);
* ``.pt`` / ``.pth`` / ``.bin`` / ``.ckpt`` files are read with
  ``torch.load(map_location="cpu", weights_only=True)`` (memory-mapped when the file is in the zip
  format written by ``torch.save`` since PyTorch 1.6). ``weights_only`` only rebuilds tensors and plain
  containers; a file that needs anything else raises :class:`UnsafeCheckpointError` and nothing in it is
  executed.

:func:`check_keys` / :func:`load_into` then compare a state dict with what a module expects and explain a
mismatch in terms a user can act on (which file, which keys, which shapes, and whether the file looks like
a different component altogether).

The error classes (:mod:`groundkit.core.checkpoint_errors`) and the folder confinement
(:func:`confined`, :func:`escaping_link`, :func:`component_folder`, from :mod:`groundkit.core.confine`) live in
modules of their own and are re-exported here.
"""
from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from groundkit.core.checkpoint_errors import CheckpointError, CheckpointMismatchError, UnsafeCheckpointError
from groundkit.core.confine import component_folder, confined, escaping_link

__all__ = [
    "CheckpointError",
    "UnsafeCheckpointError",
    "CheckpointMismatchError",
    "load_state_dict",
    "confined",
    "component_folder",
    "escaping_link",
    "read_shard_index",
    "check_keys",
    "load_into",
    "TORCH_SUFFIXES",
    "SAFETENSORS_SUFFIXES",
]

TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
SAFETENSORS_SUFFIXES = (".safetensors",)
# Wrappers that training scripts put around a state dict; unwrapped in this order.
_WRAPPER_KEYS = ("state_dict", "model")
_SHOW = 5  # how many keys of each kind an error message lists




def _convert_hint(path: Path) -> str:
    target = path.with_suffix(".safetensors").name
    return (
        "groundkit never unpickles arbitrary Python objects, so it only reads files made of tensors "
        "(plus plain dicts/lists/numbers). If you trust this file, convert it once in a separate Python "
        "session:\n"
        "    import torch, safetensors.torch as st\n"
        f"    sd = torch.load({str(path)!r}, map_location='cpu', weights_only=False)  # runs its pickled code\n"
        "    sd = sd.get('state_dict', sd)\n"
        f"    st.save_file({{k: v.contiguous() for k, v in sd.items() if torch.is_tensor(v)}}, {target!r})\n"
        "and point groundkit at the .safetensors file."
    )


def _is_safetensors_file(path: Path) -> bool:
    """Sniff the safetensors header: 8-byte little-endian length followed by a JSON object.

    Nine bytes pick the reader for a file without a known suffix; :mod:`safetensors` then validates the whole
    header when it loads the file, so parsing it here too would only read it twice."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
    except OSError:
        return False
    if len(head) < 9:
        return False
    n = int.from_bytes(head[:8], "little")
    return 0 < n < (1 << 30) and head[8:9] == b"{"


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # SafetensorError, OSError, ...
        raise CheckpointError(
            f"cannot read safetensors checkpoint {path}: {exc}. The file is probably truncated or corrupt "
            "(an interrupted download?); download or convert it again."
        ) from exc


def _load_torch(path: Path) -> Any:
    is_zip = zipfile.is_zipfile(path)
    kwargs: dict[str, Any] = {"map_location": "cpu", "weights_only": True}
    if is_zip:
        kwargs["mmap"] = True  # only the zip format (PyTorch >= 1.6) can be memory-mapped
    try:
        return torch.load(str(path), **kwargs)
    except pickle.UnpicklingError as exc:
        msg = str(exc)
        if "weights only" in msg.lower() or "weights_only" in msg.lower():
            # weights_only refused a global: this file needs arbitrary code to load.
            detail = next((ln.strip() for ln in msg.splitlines() if "GLOBAL" in ln or "global" in ln), "")
            raise UnsafeCheckpointError(
                f"{path} cannot be loaded safely: it contains Python objects other than tensors"
                + (f" ({detail})" if detail else "")
                + ".\n"
                + _convert_hint(path)
            ) from exc
        raise CheckpointError(f"cannot read checkpoint {path}: {exc} (truncated or corrupt file?)") from exc
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, KeyError) as exc:
        text = str(exc) or type(exc).__name__
        hint = "" if is_zip else " The file is not a zip archive (as written by torch.save since PyTorch 1.6);"
        raise CheckpointError(
            f"cannot read checkpoint {path}: {text.splitlines()[0]}.{hint} The file is probably truncated or "
            "corrupt (an interrupted download?); download it again."
        ) from exc


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    seen = []
    while isinstance(obj, Mapping):
        wrapper = next(
            (k for k in _WRAPPER_KEYS if k in obj and isinstance(obj[k], Mapping) and not torch.is_tensor(obj[k])),
            None,
        )
        if wrapper is None or all(torch.is_tensor(v) for v in obj.values()):
            break
        seen.append(wrapper)
        obj = obj[wrapper]
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} does not hold a state dict (found {type(obj).__name__})")
    bad = [k for k, v in obj.items() if not torch.is_tensor(v)]
    if bad:
        inside = "".join(f"[{w!r}]" for w in seen)
        raise CheckpointError(
            f"{path}{inside} is not a plain state dict: {len(bad)} entries are not tensors "
            f"(e.g. {', '.join(repr(k) for k in bad[:_SHOW])}). Expected a mapping of parameter names to tensors, "
            f"optionally wrapped as {{'state_dict': ...}} or {{'model': ...}}."
        )
    bad_names = [k for k in obj if not isinstance(k, str)]
    if bad_names:
        raise CheckpointError(f"{path} has non-string state-dict keys, e.g. {bad_names[:_SHOW]!r}")
    return dict(obj)


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from ``path`` (.safetensors, or a torch.save file) without unpickling code.

    A checkpoint wrapped as ``{"state_dict": {...}}`` or ``{"model": {...}}`` (other entries such as
    ``epoch`` or ``optimizer`` are ignored) is unwrapped. Raises ``FileNotFoundError`` for a missing file,
    :class:`UnsafeCheckpointError` for a file that needs more than tensors, :class:`CheckpointError` for a
    truncated/corrupt file; all messages name the file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    if path.is_dir():
        raise IsADirectoryError(f"expected a checkpoint file, got a folder: {path}")
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES or (suffix not in TORCH_SUFFIXES and _is_safetensors_file(path)):
        obj: Any = _load_safetensors(path)
    else:
        obj = _load_torch(path)
    return _unwrap(obj, path)


# --------------------------------------------------------------------------------------------------
# key checking

# (label, prefixes that identify it); first match wins, so more specific labels come first.
_COMPONENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("CLIP text encoder", ("text_model.",)),
    ("BERT text encoder", ("bert.embeddings.", "embeddings.word_embeddings.", "bert.encoder.layer.")),
    ("U-Net", ("down_blocks.", "time_embed", "time_embedding.", "middle_block.", "mid_block.", "up_blocks.", "conv_in.")),
    ("autoencoder (VAE)", ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.", "quant_conv_mu.")),
)


def _component(keys: Iterable[str]) -> str | None:
    keys = list(keys)
    if not keys:
        return None
    scores = []
    for label, prefixes in _COMPONENTS:
        n = sum(1 for k in keys if k.startswith(prefixes))
        scores.append((n, label))
    n, label = max(scores, key=lambda t: t[0])
    return label if n >= max(1, len(keys) // 4) else None


def _common_prefix_fix(expected: Iterable[str], got: Iterable[str]) -> str | None:
    """Describe a prefix that, added to or removed from the file's keys, would make them match."""
    exp, got = set(expected), set(got)
    if not exp or not got:
        return None
    pre = _common_prefix(got, exp)  # file keys carry an extra prefix ("module.", "model.", "bert.", ...)
    if pre:
        return f"every key in the file starts with {pre!r}; strip that prefix (e.g. a DataParallel/Lightning wrapper)"
    pre = _common_prefix(exp, got)
    if pre:
        return f"the file's keys lack the prefix {pre!r} that the module expects"
    return None


def _fmt_shape(s: Any) -> str:
    return "(" + ", ".join(str(int(d)) for d in s) + ")"


def _key_differences(expected: Mapping[str, Any], got: Mapping[str, torch.Tensor]) -> tuple[list, list, list]:
    """(missing keys, unexpected keys, (key, expected shape, file shape) mismatches), in key order."""
    exp_keys, got_keys = list(expected), list(got)
    exp_set, got_set = set(exp_keys), set(got_keys)
    missing = [k for k in exp_keys if k not in got_set]
    unexpected = [k for k in got_keys if k not in exp_set]
    mismatched = []
    for k in exp_keys:
        if k in got_set:
            es, gs = tuple(int(d) for d in expected[k]), tuple(got[k].shape)
            if es != gs:
                mismatched.append((k, es, gs))
    return missing, unexpected, mismatched


def _a(word: str) -> str:
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word


def _mismatch_hints(exp_keys: list[str], got_keys: list[str], missing: list[str], unexpected: list[str],
                    mismatched: list) -> list[str]:
    """What the differences suggest: another component's file, old monai-generative names, a stray prefix,
    or a config that does not fit the weights."""
    hints = []
    exp_comp, got_comp = _component(exp_keys), _component(got_keys)
    if exp_comp and got_comp and exp_comp != got_comp:
        hints.append(
            f"this file looks like {_a(got_comp)} checkpoint, but {_a(exp_comp)} was expected "
            "(wrong file for this component, e.g. autoencoder and diffusion model swapped?)"
        )
    if any(".to_out.0." in k for k in unexpected) and any(".out_proj." in k for k in missing):
        hints.append(
            "the file uses the old monai-generative key names (to_out.0 / upsampler conv); groundkit renames them "
            "(groundkit.families.monai_ldm.keys.convert_old_monai_keys); the remaining differences are listed above"
        )
    prefix = _common_prefix_fix(exp_keys, got_keys) if (missing and unexpected) else None
    if prefix:
        hints.append(prefix)
    if mismatched and not (missing or unexpected):
        hints.append("same architecture but different sizes: the config does not match these weights")
    return hints


def check_keys(
    expected: Mapping[str, Any],
    got: Mapping[str, torch.Tensor],
    file: str | os.PathLike | None,
    *,
    allow_missing: bool = False,
    allow_unexpected: bool = False,
    what: str | None = None,
) -> None:
    """Raise :class:`CheckpointMismatchError` unless ``got`` fits ``expected`` (name -> shape).

    The message names ``file``, counts missing keys, unexpected keys and shape mismatches, lists the first
    few of each, and adds hints: the file looks like another component (e.g. an autoencoder where a U-Net was
    expected), an old monai-generative file where MONAI core keys were expected, or a stray key prefix.
    ``allow_missing`` / ``allow_unexpected`` relax the corresponding check (shapes are always checked).
    """
    exp_keys, got_keys = list(expected), list(got)
    missing, unexpected, mismatched = _key_differences(expected, got)
    bad_missing = missing if not allow_missing else []
    bad_unexpected = unexpected if not allow_unexpected else []
    if not (bad_missing or bad_unexpected or mismatched):
        return

    name = str(file) if file is not None else "<state dict>"
    lines = [
        f"checkpoint {name} does not match {what or 'the model'}: "
        f"{len(bad_missing)} missing key(s), {len(bad_unexpected)} unexpected key(s), "
        f"{len(mismatched)} shape mismatch(es) ({len(got_keys)} keys in file, {len(exp_keys)} expected)."
    ]
    if bad_missing:
        lines.append("  missing (first %d): %s" % (min(_SHOW, len(bad_missing)), ", ".join(bad_missing[:_SHOW])))
    if bad_unexpected:
        lines.append(
            "  unexpected (first %d): %s" % (min(_SHOW, len(bad_unexpected)), ", ".join(bad_unexpected[:_SHOW]))
        )
    if mismatched:
        lines.append("  shape mismatches (first %d):" % min(_SHOW, len(mismatched)))
        for k, es, gs in mismatched[:_SHOW]:
            lines.append(f"    {k}: expected {_fmt_shape(es)}, file has {_fmt_shape(gs)}")
    for h in _mismatch_hints(exp_keys, got_keys, missing, unexpected, mismatched):
        lines.append("  hint: " + h)
    raise CheckpointMismatchError("\n".join(lines))


def load_into(
    module: torch.nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    file: str | os.PathLike | None,
    strict: bool = True,
    *,
    what: str | None = None,
    assign: bool = False,
):
    """Check ``state_dict`` against ``module`` with :func:`check_keys`, then ``module.load_state_dict``.

    With ``strict=False`` missing and unexpected keys are tolerated (shapes are still checked). Returns what
    ``load_state_dict`` returns (missing/unexpected key lists).
    """
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    check_keys(
        expected,
        state_dict,
        file,
        allow_missing=not strict,
        allow_unexpected=not strict,
        what=what or type(module).__name__,
    )
    return module.load_state_dict(dict(state_dict), strict=strict, assign=assign)  # assign: a meta-device module takes the file's tensors



def read_shard_index(index: str | os.PathLike) -> list[Path]:
    """The shard files of a sharded checkpoint (``*.index.json``), each confined to the index's folder."""
    import json

    index = Path(index)
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
        if not isinstance(weight_map, dict):
            raise TypeError("weight_map is not a mapping")
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{index}: not a valid sharded-checkpoint index ({exc})") from None
    shards = []
    for key, shard in weight_map.items():
        path = confined(index.parent, shard, f"{index}: weight_map[{key!r}]")
        if path not in shards:
            shards.append(path)
    return sorted(shards)


def _common_prefix(keys: set[str], other: set[str]) -> str | None:
    """The first dotted component shared by every key of ``keys``, when stripping it matches ``other``."""
    first = next(iter(keys))
    if "." not in first:
        return None
    pre = first.split(".", 1)[0] + "."
    if all(k.startswith(pre) for k in keys) and len({k[len(pre):] for k in keys} & other) >= 0.9 * len(other):
        return pre
    return None

