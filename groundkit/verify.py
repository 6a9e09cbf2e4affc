"""``groundkit checkpoints verify NAME``: check a checkpoint's files before (instead of) loading them.

For a named checkpoint (checkpoints.yaml) or a folder, :func:`verify_checkpoint` checks

* **presence and size** of every file the adapter needs (the entry's ``files`` plus, per adapter, the
  configs, weights, text encoder, tokenizer and scheduler), and whether a weights file is complete
  (a safetensors file must be as long as its header says; a ``torch.save`` file must be a whole zip);
* **sha256** of the files for which checkpoints.yaml records one (``sha256: {relative file: hex}``);
* with ``deep=True``, **key sets and shapes**: each network is built from its config on the META device
  (no memory), and its state-dict keys/shapes are compared with the file's - read from the safetensors
  header, or from a ``weights_only`` memory-mapped ``torch.load`` - after the renames the loaders apply
  (old monai-generative -> MONAI core names, diffusers' deprecated attention names, the ``text_model.``
  prefix of CLIP files saved by transformers 4, CXR-BERT's tolerated buffers and tied copies).

Nothing is downloaded and nothing is unpickled beyond tensors. :meth:`VerifyReport.text` is a checklist
ending with what to download from where (the entry's ``source``) when something is missing.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .safeload import CheckpointError, CheckpointMismatchError, check_keys, load_state_dict, read_shard_index

__all__ = [
    "VerifyReport",
    "Check",
    "KeyCheck",
    "verify_checkpoint",
    "file_shapes",
    "read_safetensors_header",
    "convert_old_monai_keys",
    "normalize_clip_keys",
    "diffusers_deprecated_renames",
    "monai_networks_on_meta",
    "sha256_file",
]

OK, MISSING, BAD, WARN, INFO = "ok", "missing", "bad", "warn", "info"
_MARK = {OK: "[ok]     ", MISSING: "[MISSING]", BAD: "[BAD]    ", WARN: "[warn]   ", INFO: "[info]   "}
_SHOW = 5

DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
TRANSFORMERS_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
SD21_HUB_ID = "stabilityai/stable-diffusion-2-1-base"

_SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}


# --------------------------------------------------------------------------------------------------
# report


@dataclass
class Check:
    status: str  # ok | missing | bad | warn | info
    item: str  # file (relative to the checkpoint folder when inside it) or component label
    detail: str = ""


@dataclass
class KeyCheck:
    """Deep comparison of one weights file with the network built from its config."""

    component: str
    file: Path
    module: str  # class of the network built on the meta device
    expected: int  # keys the network has
    in_file: int  # keys in the file
    mapping: dict[str, str]  # network key -> file key (after renames); complete when ``error`` is None
    renamed: int = 0
    tolerated: list[str] = field(default_factory=list)  # file keys dropped on purpose (rebuilt buffers, ...)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class VerifyReport:
    name: str
    adapter: str
    path: Path
    source: str = ""
    deep: bool = True
    checks: list[Check] = field(default_factory=list)
    keys: list[KeyCheck] = field(default_factory=list)
    hints: dict[str, str] = field(default_factory=dict)  # missing item -> where it comes from

    @property
    def problems(self) -> list[Check]:
        return [c for c in self.checks if c.status in (MISSING, BAD)]

    @property
    def missing(self) -> list[str]:
        return [c.item for c in self.checks if c.status == MISSING]

    @property
    def ok(self) -> bool:
        return not self.problems

    def text(self) -> str:
        lines = [f"checkpoint {self.name} (adapter {self.adapter})", f"  folder: {self.path}"]
        for c in self.checks:
            head = f"  {_MARK[c.status]} {c.item}"
            if not c.detail:
                lines.append(head)
                continue
            first, *rest = c.detail.splitlines()
            lines.append(f"{head}: {first}")
            lines.extend("              " + ln for ln in rest)
        n_bad = len(self.problems)
        if n_bad:
            lines.append(f"result: {n_bad} problem(s)" + ("" if self.deep else " (key sets not checked: --no-deep)"))
        else:
            lines.append("result: all files present and consistent" + ("" if self.deep else " (key sets not checked: --no-deep)"))
        if self.missing:
            lines.append("to download:")
            groups: dict[str, list[str]] = {}
            for item in self.missing:
                groups.setdefault(self.hints.get(item, ""), []).append(item)
            for hint, items in groups.items():
                lines.append(f"  - {', '.join(items)}" + (f": {hint}" if hint else ""))
            if self.source:
                lines.append(f"  source: {self.source}")
        elif n_bad and self.source:
            lines.append(f"replace the bad files from: {self.source}")
        return "\n".join(lines)

    def __str__(self) -> str:  # pragma: no cover - convenience
        return self.text()


# --------------------------------------------------------------------------------------------------
# files


def _human(n: int) -> str:
    x = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if x < 1000 or unit == "TB":
            return f"{x:.0f} {unit}" if unit == "B" else f"{x:.1f} {unit}"
        x /= 1000
    return f"{n} B"  # pragma: no cover


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def read_safetensors_header(path: str | os.PathLike) -> dict[str, tuple[str, tuple[int, ...]]]:
    """``{name: (dtype, shape)}`` from a safetensors header, without reading any tensor data.

    Raises :class:`CheckpointError` naming the file when the header is unreadable or the file is shorter
    (or longer) than the header says - an interrupted download.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path}: only {size} bytes, not a safetensors file (truncated download?)")
        (n,) = struct.unpack("<Q", head)
        if n <= 0 or 8 + n > size:
            raise CheckpointError(
                f"{path}: safetensors header of {n} bytes does not fit in the file's {size} bytes "
                "(truncated or not a safetensors file); download it again"
            )
        try:
            header = json.loads(fh.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{path}: unreadable safetensors header ({exc}); download it again") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: unreadable safetensors header (not a JSON object)")
    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (_, b) = info["dtype"], tuple(int(d) for d in info["shape"]), info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{path}: malformed safetensors header entry {name!r}") from None
        end = max(end, int(b))
        out[name] = (str(dtype), shape)
    expected = 8 + n + end
    if expected != size:
        what = "truncated" if size < expected else "longer than its header says"
        raise CheckpointError(
            f"{path}: {what}: {size} bytes on disk, the header describes {expected} bytes; download it again"
        )
    return out


def _meta(shape: Iterable[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.empty(tuple(shape), dtype=dtype, device="meta")


def file_shapes(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The file's state dict as META tensors (name -> shape/dtype only).

    safetensors: from the header (no data read). ``.pth``/``.bin``: :func:`groundkit.safeload.load_state_dict`
    (``weights_only``, memory-mapped for zip files, so nothing is read into memory either). An index file
    (``*.index.json``, sharded checkpoints) is followed to its shards.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    if path.name.endswith(".index.json"):
        out: dict[str, torch.Tensor] = {}
        for shard in read_shard_index(path):
            out.update(file_shapes(shard))
        return out
    if path.suffix == ".safetensors":
        return {
            k: _meta(shape, _SAFETENSORS_DTYPES.get(dt, torch.float32))
            for k, (dt, shape) in read_safetensors_header(path).items()
        }
    sd = load_state_dict(path)
    return {k: _meta(v.shape, v.dtype) for k, v in sd.items()}


LEGACY_NOTE = "not a zip archive: the legacy (pre-1.6) torch.save format, or corrupt; only the deep check reads it"


def _weights_integrity(path: Path) -> str | None:
    """Cheap completeness check of one weights file (None = looks whole)."""
    try:
        if path.name.endswith(".index.json"):
            file_shapes(path)  # follows the shards; headers only for safetensors
        elif path.suffix == ".safetensors":
            read_safetensors_header(path)
        elif not zipfile.is_zipfile(path):
            with open(path, "rb") as fh:
                magic = fh.read(4)
            if magic == b"PK\x03\x04":
                raise CheckpointError(f"{path}: truncated zip archive (its central directory at the end is missing); "
                                      "download it again")
            return LEGACY_NOTE
    except CheckpointError as exc:
        return str(exc)
    return None


# --------------------------------------------------------------------------------------------------
# key renames (what the loaders do to file keys)


def convert_old_monai_keys(state: Mapping[str, Any], expected: Iterable[str]) -> tuple[dict[str, Any], int]:
    """Rename an old ``generative`` (monai-generative) state dict to MONAI core's names.

    Same renames as MONAI's ``load_old_state_dict`` (cross-attention ``to_out.0`` -> ``out_proj``, spatial
    attention ``to_q/k/v`` -> ``attn.to_q/k/v`` and ``proj_attn`` -> ``attn.out_proj``, upsampler ``conv`` ->
    ``postconv``), but pure: keys with no counterpart stay as they are (so a strict check reports them as
    unexpected) and a key the network expects but the file lacks stays missing - MONAI's own function
    silently keeps the network's random initial values for those. Returns ``(renamed dict, n renamed)``.
    """
    expected = list(expected)
    exp = set(expected)
    out = dict(state)
    renamed = 0
    for k in expected:
        if k in out:
            continue
        candidates = []
        if "postconv" in k:
            candidates.append(k.replace("postconv", "conv"))
        if ".attn.to_" in k:
            candidates.append(k.replace(".attn.to_", ".to_"))
        if ".attn.out_proj." in k:
            candidates.append(k.replace(".attn.out_proj.", ".proj_attn."))
        if ".out_proj." in k and "transformer_blocks" in k:
            candidates.append(k.replace(".out_proj.", ".to_out.0."))
        for old in candidates:
            if old in out and old not in exp:
                out[k] = out.pop(old)
                renamed += 1
                break
    return out, renamed


def diffusers_deprecated_renames(model: torch.nn.Module, state: dict[str, Any]) -> int:
    """In place: diffusers' own rename of deprecated attention names (SD 1.x VAE files: query/key/value/proj_attn)."""
    before = set(state)
    fix = getattr(model, "_fix_state_dict_keys_on_load", None)
    if fix is None:  # pragma: no cover - older/newer diffusers
        return 0
    fix(state)
    return len(before - set(state))


# --------------------------------------------------------------------------------------------------
# networks on the meta device


def monai_networks_on_meta(config_file: str | os.PathLike) -> dict[str, torch.nn.Module]:
    """``{"autoencoder": AutoencoderKL, "diffusion_model": DiffusionModelUNet}`` built from a bundle's
    ``configs/inference.json`` on the meta device (its ``$`` expressions are refused, never evaluated)."""
    from monai.networks.nets import AutoencoderKL, DiffusionModelUNet

    from .adapters.monai_ldm import network_kwargs, read_bundle_config

    config_file = Path(config_file)
    cfg = read_bundle_config(config_file)
    out = {}
    for label, key, cls in (("autoencoder", "autoencoder_def", AutoencoderKL),
                            ("diffusion_model", "diffusion_def", DiffusionModelUNet)):
        kw = network_kwargs(cfg, key, config_file)
        try:
            with torch.device("meta"):
                out[label] = cls(**kw)
        except (TypeError, ValueError, AssertionError) as exc:
            raise ValueError(f"{config_file}: {key} does not build a {cls.__name__}: {exc}") from None
    return out


def _diffusers_on_meta(cls, config_file: Path) -> torch.nn.Module:
    cfg = _read_json(config_file)
    from diffusers.utils import logging as dlog

    dlog.set_verbosity_error()
    try:
        with torch.device("meta"):
            return cls.from_config(cfg)
    except (TypeError, ValueError, KeyError, AssertionError) as exc:
        raise ValueError(f"{config_file}: does not build a {cls.__name__}: {exc}") from None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: missing") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


# --------------------------------------------------------------------------------------------------
# components

# A weights component: where its config and weights are, how to build its network on the meta device
# and how the loader renames file keys. ``build(file_keys)`` returns the network (some text encoders'
# optional heads depend on what the file has); ``normalize(model, file_sd)`` returns the renamed dict,
# the number of renamed keys and the file keys dropped on purpose.
Normalize = Callable[[torch.nn.Module, dict[str, Any]], tuple[dict[str, Any], int, list[str]]]


@dataclass
class _Weights:
    label: str
    candidates: list[Path]  # first existing one is used (the loader's preference order)
    build: Callable[[set[str]], torch.nn.Module] | None  # None: no deep check possible (config missing)
    normalize: Normalize
    hint: str = ""


def _no_renames(model, sd):
    return dict(sd), 0, []


def _monai_normalize(model, sd):
    own = set(model.state_dict())
    if set(sd) == own:
        return dict(sd), 0, []
    out, n = convert_old_monai_keys(sd, own)
    return out, n, []


def _diffusers_normalize(model, sd):
    sd = dict(sd)
    n = diffusers_deprecated_renames(model, sd)
    return sd, n, []


def normalize_clip_keys(state: Mapping[str, Any], own: Iterable[str]) -> tuple[dict[str, Any], int, list[str]]:
    """A CLIP text-encoder file's keys as transformers 5's ``CLIPTextModel`` names them.

    Files saved by transformers 4 (SD-2.1-base's ``text_encoder/model.safetensors``) prefix every key with
    ``text_model.`` and carry the ``embeddings.position_ids`` buffer; transformers 5's module has neither.
    Returns ``(renamed dict, n renamed, dropped keys)``; anything else is left for a strict check to report.
    """
    own = set(own)
    out: dict[str, Any] = {}
    dropped: list[str] = []
    n = 0
    strip = any(k.startswith("text_model.") for k in state) and not any(k.startswith("text_model.") for k in own)
    for k, v in state.items():
        key = k[len("text_model."):] if strip and k.startswith("text_model.") else k
        if key.endswith("embeddings.position_ids") and key not in own:
            dropped.append(k)  # a buffer transformers 4 saved; rebuilt by the module
            continue
        n += key != k
        out[key] = v
    return out, n, dropped


def _clip_normalize(model, sd):
    return normalize_clip_keys(sd, model.state_dict().keys())


def _bert_normalize(model, sd):
    from .adapters.cxrbert import TOLERATED_UNEXPECTED

    own = set(model.state_dict())
    sd = dict(sd)
    n = 0
    if not any(k.startswith("bert.") for k in sd) and any(k.startswith("embeddings.") for k in sd):
        sd = {"bert." + k: v for k, v in sd.items()}
        n = len(sd)
    dropped = [k for k in list(sd) if k in TOLERATED_UNEXPECTED or k.startswith("cls.seq_relationship.")]
    for k in dropped:
        sd.pop(k)
    # tied copies that newer save_pretrained omits are filled from what they are tied to
    for copy, src in (("cls.predictions.decoder.weight", "bert.embeddings.word_embeddings.weight"),
                      ("cls.predictions.decoder.bias", "cls.predictions.bias")):
        if copy in own and copy not in sd and src in sd:
            sd[copy] = sd[src]
        elif src in own and src not in sd and copy in sd:
            sd[src] = sd[copy]
    return sd, n, dropped


def _bert_builder(te_dir: Path):
    def build(file_keys: set[str]) -> torch.nn.Module:
        from .adapters.cxrbert import CXRBertModel, _kind, build_bert_config, read_text_encoder_config

        cfg = read_text_encoder_config(te_dir)
        where = str(te_dir / "config.json")
        kind = _kind(cfg, where)
        config = build_bert_config(cfg, where)
        bare = not any(k.startswith("bert.") for k in file_keys)
        pref = "" if bare else "bert."
        pooler = any(k.startswith(pref + "pooler.") for k in file_keys)
        with torch.device("meta"):
            if kind == "cxr-bert":
                return CXRBertModel(config, projection_size=int(cfg.get("projection_size", 128)), mlm_head=True,
                                    pooler=pooler)
            has_proj = any(k.startswith("cls_projection_head.") for k in file_keys)
            return CXRBertModel(
                config,
                projection_size=int(cfg["projection_size"]) if has_proj and cfg.get("projection_size") else None,
                mlm_head=any(k.startswith("cls.predictions.") for k in file_keys),
                pooler=pooler,
            )

    return build


def _clip_builder(te_dir: Path):
    def build(file_keys: set[str]) -> torch.nn.Module:
        from transformers import CLIPTextConfig, CLIPTextModel
        from transformers.utils import logging as tlog

        tlog.set_verbosity_error()
        cfg = _read_json(te_dir / "config.json")
        try:
            config = CLIPTextConfig(**{k: v for k, v in cfg.items() if not k.startswith("_")})
            with torch.device("meta"):
                return CLIPTextModel(config)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{te_dir / 'config.json'}: does not build a CLIPTextModel: {exc}") from None

    return build


def _weights_candidates(folder: Path, names: Iterable[str]) -> list[Path]:
    names = list(names)
    return [folder / n for n in names] + [folder / (n + ".index.json") for n in names]


# --------------------------------------------------------------------------------------------------
# checking


class _Checker:
    def __init__(self, report: VerifyReport, root: Path, entry_sha: Mapping[str, str], deep: bool):
        self.r, self.root, self.deep = report, root, deep
        self.sha = {str(Path(k)): v for k, v in (entry_sha or {}).items()}
        self.seen: dict[Path, bool] = {}  # file -> usable

    def rel(self, p: Path) -> str:
        try:
            return str(p.relative_to(self.root))
        except ValueError:
            return str(p)

    def add(self, status: str, item: str, detail: str = "") -> None:
        self.r.checks.append(Check(status, item, detail))

    def missing(self, item: str, hint: str = "", detail: str = "") -> None:
        self.add(MISSING, item, detail)
        if hint:
            self.r.hints.setdefault(item, hint)

    def file(self, p: Path, hint: str = "", weights: bool = False) -> bool:
        """Presence, size, completeness (weights) and sha256 of one file; True if it is usable."""
        if p not in self.seen:
            self.seen[p] = self._file(p, hint, weights)
        return self.seen[p]

    def _file(self, p: Path, hint: str, weights: bool) -> bool:
        item = self.rel(p)
        if not p.exists():
            self.missing(item, hint)
            return False
        if p.is_dir():
            self.add(BAD, item, "is a folder, expected a file")
            return False
        size = p.stat().st_size
        if size == 0:
            self.add(BAD, item, "empty file (0 bytes)")
            return False
        detail = _human(size)
        status = OK
        if weights:
            problem = _weights_integrity(p)
            if problem:
                status = WARN if problem == LEGACY_NOTE else BAD
                detail += "; " + problem
        usable = status != BAD
        want = self.sha.get(item)
        if want:
            got = sha256_file(p)
            if got.lower() == str(want).lower():
                detail += "; sha256 ok"
            else:  # readable, so later checks still run; but not the file checkpoints.yaml describes
                status = BAD
                detail += f"; sha256 MISMATCH: expected {want}, file has {got}"
        self.add(status, item, detail)
        return usable

    def folder(self, p: Path, label: str, hint: str) -> bool:
        if p.is_dir():
            return True
        self.missing(self.rel(p) + "/", hint, f"{label} folder")
        return False

    def weights(self, w: _Weights) -> None:
        existing = [c for c in w.candidates if c.is_file()]
        if not existing:
            names = " or ".join(self.rel(c) for c in w.candidates if not c.name.endswith(".index.json"))
            self.missing(self.rel(w.candidates[0]), w.hint, f"{w.label} weights (looked for {names})")
            return
        f = existing[0]
        if not self.file(f, w.hint, weights=True) or not self.deep or w.build is None:
            return
        self.compare(w, f)

    def compare(self, w: _Weights, f: Path) -> None:
        item = self.rel(f)
        try:
            got = file_shapes(f)
        except (CheckpointError, OSError) as exc:
            self.add(BAD, item, f"keys: {exc}")
            return
        try:
            model = w.build(set(got))
        except (FileNotFoundError, ValueError) as exc:
            self.add(BAD, item, f"keys not checked: {exc}")
            return
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        sd, renamed, dropped = w.normalize(model, got)
        kc = KeyCheck(w.label, f, type(model).__name__, len(expected), len(got), {}, renamed, dropped)
        try:
            check_keys(expected, sd, f, what=f"the {w.label} ({type(model).__name__} built from its config)")
        except CheckpointMismatchError as exc:
            kc.error = str(exc)
            self.r.keys.append(kc)
            self.add(BAD, item, "keys: " + kc.error)
            return
        kc.mapping = _file_key_mapping(expected, sd, got)
        self.r.keys.append(kc)
        extra = []
        if renamed:
            extra.append(f"{renamed} renamed")
        if dropped:
            extra.append(f"{len(dropped)} tolerated ({', '.join(dropped[:2])}{', ...' if len(dropped) > 2 else ''})")
        n_params = sum(_numel(s) for s in expected.values())
        self.add(OK, item, f"keys: all {len(expected)} tensors of {type(model).__name__} present with matching "
                           f"shapes ({n_params / 1e6:.1f} M values)" + (f"; {'; '.join(extra)}" if extra else ""))


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _file_key_mapping(expected: Mapping[str, Any], sd: Mapping[str, Any], got: Mapping[str, Any]) -> dict[str, str]:
    """network key -> file key, following the renames by tensor identity (renames move, never copy)."""
    by_id = {id(v): k for k, v in got.items()}
    return {k: by_id.get(id(sd[k]), k) for k in expected}


# --------------------------------------------------------------------------------------------------
# adapters


def _verify_monai(c: _Checker, root: Path, options: Mapping[str, Any], source: str) -> None:
    cfg_file = root / "configs" / "inference.json"
    nets: dict[str, torch.nn.Module] | None = None
    bundle_hint = "MONAI model zoo bundle cxr_image_synthesis_latent_diffusion_model"
    if c.file(cfg_file, bundle_hint):
        try:
            nets = monai_networks_on_meta(cfg_file)
            c.add(OK, c.rel(cfg_file), "autoencoder_def, diffusion_def read as data (no expressions evaluated)")
        except (ValueError, FileNotFoundError) as exc:
            c.add(BAD, c.rel(cfg_file), str(exc))
    for label, name in (("autoencoder", "autoencoder"), ("diffusion model", "diffusion_model")):
        model = nets[name] if nets else None
        c.weights(_Weights(
            label, [root / "models" / f"{name}.pth", root / "models" / f"{name}.safetensors"],
            (lambda keys, m=model: m) if model is not None else None, _monai_normalize, bundle_hint,
        ))
    # CLIP text encoder: configured folder, the bundle's own folders, or the local Hugging Face cache
    te_hint = f"text_encoder/ and tokenizer/ of {SD21_HUB_ID} (copy them into the bundle folder)"
    te = options.get("text_encoder")
    tok = options.get("tokenizer")
    if te and Path(te).expanduser().is_dir():
        te_dir = Path(te).expanduser()
        tok_dir = Path(tok).expanduser() if tok else te_dir
    elif (root / "text_encoder").is_dir():
        te_dir = root / "text_encoder"
        tok_dir = root / "tokenizer" if (root / "tokenizer").is_dir() else te_dir
    else:
        cached = _hf_cached_folder(te or SD21_HUB_ID)
        if cached is None:
            c.missing("text_encoder/", te_hint, f"CLIP text encoder: not in {root}, not configured, and "
                                                f"{te or SD21_HUB_ID} is not in the local Hugging Face cache")
            c.missing("tokenizer/", te_hint, "CLIP tokenizer")
            return
        te_dir, tok_dir = cached / "text_encoder", cached / "tokenizer"
        c.add(INFO, "text encoder", f"from the local Hugging Face cache: {cached}")
    _verify_clip_folder(c, te_dir, tok_dir, te_hint)


def _hf_cached_folder(repo_id: str) -> Path | None:
    """Snapshot folder of a hub repo in the local cache (no network), if its text encoder is there."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover
        return None
    try:
        hit = try_to_load_from_cache(repo_id, "text_encoder/config.json")
    except Exception:  # noqa: BLE001 - an odd id is simply "not cached"
        return None
    return Path(hit).parent.parent if isinstance(hit, str) else None


def _verify_clip_folder(c: _Checker, te_dir: Path, tok_dir: Path, hint: str) -> None:
    if c.file(te_dir / "config.json", hint):
        try:
            mt = _read_json(te_dir / "config.json").get("model_type", "")
            if mt not in ("clip_text_model", "clip"):
                c.add(BAD, c.rel(te_dir / "config.json"), f"model_type {mt!r}, expected clip_text_model")
        except ValueError as exc:
            c.add(BAD, c.rel(te_dir / "config.json"), str(exc))
    build = _clip_builder(te_dir) if (te_dir / "config.json").is_file() else None
    c.weights(_Weights("CLIP text encoder", _weights_candidates(te_dir, TRANSFORMERS_WEIGHTS), build,
                       _clip_normalize, hint))
    _verify_tokenizer(c, tok_dir, "clip", hint)


def _verify_tokenizer(c: _Checker, tok_dir: Path, kind: str, hint: str) -> None:
    if (tok_dir / "tokenizer.json").is_file() and kind == "clip":
        c.file(tok_dir / "tokenizer.json", hint)
        return
    names = ("vocab.json", "merges.txt") if kind == "clip" else ("vocab.txt",)
    for n in names:
        c.file(tok_dir / n, hint)


def _verify_diffusers(c: _Checker, root: Path, options: Mapping[str, Any], source: str) -> None:
    from diffusers import AutoencoderKL, UNet2DConditionModel

    sub = options.get("unet_subfolder")
    subs = [sub] if sub else ["unet_ema", "unet"]
    unet_dir = next((root / s for s in subs if (root / s / "config.json").is_file()), None)
    unet_hint = "fine-tuned U-Net (unet_ema/ = EMA weights, or unet/)"
    if unet_dir is None:
        c.missing(f"{subs[0]}/config.json", unet_hint, f"U-Net config (looked for {' or '.join(s + '/config.json' for s in subs)})")
        c.missing(f"{subs[0]}/{DIFFUSERS_WEIGHTS[0]}", unet_hint, "U-Net weights")
    else:
        c.file(unet_dir / "config.json", unet_hint)
        c.weights(_Weights("U-Net", _weights_candidates(unet_dir, DIFFUSERS_WEIGHTS),
                           lambda keys: _diffusers_on_meta(UNet2DConditionModel, unet_dir / "config.json"),
                           _diffusers_normalize, unet_hint))
    vae_hint = "vae/ of stable-diffusion-v1-5/stable-diffusion-v1-5"
    if options.get("vae", "vae") == "identity":
        c.add(INFO, "vae/", "pixel-space model (vae: identity): no autoencoder")
    else:
        vae_dir = root / "vae"
        if c.file(vae_dir / "config.json", vae_hint):
            c.weights(_Weights("VAE", _weights_candidates(vae_dir, DIFFUSERS_WEIGHTS),
                               lambda keys: _diffusers_on_meta(AutoencoderKL, vae_dir / "config.json"),
                               _diffusers_normalize, vae_hint))
        else:
            c.missing(c.rel(vae_dir / DIFFUSERS_WEIGHTS[0]), vae_hint, "VAE weights")
    sched = root / "scheduler" / "scheduler_config.json"
    if c.file(sched, "scheduler/ of stable-diffusion-v1-5/stable-diffusion-v1-5"):
        try:
            from diffusers import DDIMScheduler

            DDIMScheduler.from_config(_read_json(sched))
        except (ValueError, TypeError) as exc:
            c.add(BAD, c.rel(sched), str(exc))
    te_dir = Path(options.get("text_encoder", root / "text_encoder")).expanduser()
    tok_dir = Path(options.get("tokenizer", root / "tokenizer")).expanduser()
    te_hint = "text_encoder/ (and tokenizer/) of microsoft/BiomedVLP-CXR-BERT-specialized"
    if not c.file(te_dir / "config.json", te_hint):
        c.missing(c.rel(te_dir / TRANSFORMERS_WEIGHTS[1]), te_hint, "text encoder weights")
        c.file(tok_dir / "vocab.txt", te_hint)
        return
    try:
        cfg = _read_json(te_dir / "config.json")
    except ValueError as exc:
        c.add(BAD, c.rel(te_dir / "config.json"), str(exc))
        return
    model_type = cfg.get("model_type", "")
    if model_type in ("clip_text_model", "clip"):
        build, norm, kind = _clip_builder(te_dir), _clip_normalize, "clip"
    else:
        build, norm, kind = _bert_builder(te_dir), _bert_normalize, "bert"
    c.weights(_Weights("text encoder", _weights_candidates(te_dir, TRANSFORMERS_WEIGHTS), build, norm, te_hint))
    if kind == "bert" and not (tok_dir / "vocab.txt").is_file() and (te_dir / "vocab.txt").is_file():
        tok_dir = te_dir
    _verify_tokenizer(c, tok_dir, kind, te_hint)


_VERIFIERS = {"monai-ldm": _verify_monai, "diffusers-sd": _verify_diffusers}


# --------------------------------------------------------------------------------------------------
# entry point


def verify_checkpoint(name_or_path: str | os.PathLike, checkpoints_file: str | os.PathLike | None = None,
                      deep: bool = True) -> VerifyReport:
    """Check a named checkpoint (checkpoints.yaml) or a checkpoint folder; see the module docstring.

    Never raises for a missing or broken file (that is what the report is for); raises ``ValueError`` for
    a name that is neither in checkpoints.yaml nor an existing folder, and for a malformed checkpoints.yaml.
    """
    from . import registry

    entries = registry.load_checkpoints(checkpoints_file)
    if isinstance(name_or_path, str) and name_or_path in entries:
        entry = entries[name_or_path]
        options = dict(entry.options)
        if entry.path.is_dir():
            cfg = registry.folder_config(entry.path)
            options = {**{k: v for k, v in cfg.items() if k in registry.ADAPTER_OPTIONS}, **options}
    else:
        p = Path(name_or_path).expanduser()
        if not p.exists():
            raise ValueError(f"{str(name_or_path)!r} is neither a checkpoint name ({', '.join(entries)}) nor an existing folder")
        entry = registry.resolve(p, checkpoints_file)
        options = dict(entry.options)
    root = entry.path
    report = VerifyReport(entry.name, entry.adapter, root, entry.source, deep)
    c = _Checker(report, root, entry.sha256, deep)
    if not root.is_dir():
        c.missing(str(root) + "/", entry.source, "checkpoint folder not found; every file below is missing")
    for f in entry.files:  # what checkpoints.yaml lists (checked before loading by registry.resolve)
        c.file(root / f, entry.source, weights=Path(f).suffix in (".safetensors", ".pth", ".bin", ".pt"))
    verifier = _VERIFIERS.get(entry.adapter)
    if verifier is None:
        c.add(INFO, "adapter", f"no verifier for adapter {entry.adapter!r}: only the listed files were checked")
    else:
        verifier(c, root, options, entry.source)
    for rel in entry.sha256:  # recorded hashes of files no check above looked at
        p = root / rel
        if p not in c.seen:
            c.file(p, entry.source, weights=Path(rel).suffix in (".safetensors", ".pth", ".bin", ".pt"))
    return report
