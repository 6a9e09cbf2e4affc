"""The on-disk capture store: one atomically written .npz per sample, maps range-normalised to float16."""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from groundkit.bench.ablation.windows import GROUP, STORE_VERSION
from groundkit.core.outdir import make_dirs, write_npz
from groundkit.core.types import LayerInfo
from groundkit.engine.maps import AttentionMaps


class AblationStore:
    """Per-sample captured maps, on disk (``root``) or in memory (``root=None``).

    Entry = one ``<sample>-<hash>.npz``: members ``L<layer>`` (steps, h, w) (+ ``L<layer>_lo`` and
    ``L<layer>_scale`` in float16 mode) and ``meta`` (UTF-8 JSON as uint8). Written to a hidden
    temporary file and renamed into place, so an entry either exists whole or not at all; leftover
    temporary files (``.*.tmp``) are never read as entries."""

    def __init__(self, root: str | Path | None, dtype: str = "float16"):
        if dtype not in ("float16", "float32"):
            raise ValueError(f"store dtype: expected float16 or float32, got {dtype!r}")
        self.root = None if root is None else Path(root)
        self.dtype = dtype
        self._mem: dict[str, dict[str, np.ndarray]] = {}
        if self.root is not None:  # inside the output folder: never a link leaving it
            make_dirs(self.root, self.root.parent)

    @staticmethod
    def key(sample) -> str:
        """File-safe, unique per (sample id, image, phrase, category)."""
        ident = json.dumps([sample.sample_id, str(sample.image_path), sample.phrase, sample.category])
        h = hashlib.sha1(ident.encode()).hexdigest()[:10]
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", str(sample.sample_id))[:60].lstrip(".") or "sample"
        return f"{safe}-{h}"

    def path(self, key: str) -> Path:
        assert self.root is not None
        return self.root / f"{key}.npz"

    def keys(self) -> list[str]:
        if self.root is None:
            return sorted(self._mem)
        return sorted(p.stem for p in self.root.glob("*.npz") if not p.name.startswith("."))

    def __len__(self) -> int:
        return len(self.keys())

    def meta(self, key: str) -> dict | None:
        """The entry's meta, or None when absent or unreadable (then it is captured again)."""
        try:
            if self.root is None:
                if key not in self._mem:
                    return None
                return json.loads(bytes(self._mem[key]["meta"]).decode())
            p = self.path(key)
            if not p.is_file():
                return None
            with np.load(p, allow_pickle=False) as z:
                return json.loads(bytes(z["meta"]).decode())
        except Exception:
            return None

    def covers(self, key: str, capture_key: str, steps: Sequence[int], layers: Sequence[int]) -> bool:
        """True when the entry exists, was captured with the same capture settings and holds every
        step and layer needed (an entry captured for a wider grid is reused)."""
        m = self.meta(key)
        if m is None or m.get("version") != STORE_VERSION or m.get("capture_key") != capture_key:
            return False
        if m.get("store_dtype") != self.dtype:
            return False
        have_layers = {info["index"] for info in m["layers"]}
        return set(steps) <= set(m["steps"]) and set(layers) <= have_layers

    def put(self, key: str, maps: AttentionMaps, steps: Sequence[int], meta: dict) -> None:
        gi = maps.groups.index(GROUP)
        pos = {s: i for i, s in enumerate(maps.steps)}
        idx = torch.tensor([pos[s] for s in steps])
        arrays: dict[str, np.ndarray] = {}
        for info in maps.layers:
            m = maps.maps[info.index][idx, gi].float()  # (S, h, w)
            if self.dtype == "float32":
                arrays[f"L{info.index}"] = m.numpy().astype(np.float32)
            else:
                lo = m.amin(dim=(1, 2))
                scale = m.amax(dim=(1, 2)) - lo
                scale = torch.where(scale > 0, scale, torch.ones_like(scale))
                q = (m - lo[:, None, None]) / scale[:, None, None]
                arrays[f"L{info.index}"] = q.numpy().astype(np.float16)
                arrays[f"L{info.index}_lo"] = lo.numpy().astype(np.float32)
                arrays[f"L{info.index}_scale"] = scale.numpy().astype(np.float32)
        meta = dict(meta, version=STORE_VERSION, store_dtype=self.dtype, steps=[int(s) for s in steps],
                    layers=[{"index": i.index, "name": i.name, "resolution": i.resolution} for i in maps.layers])
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        if self.root is None:
            self._mem[key] = arrays
            return
        write_npz(self.path(key), arrays, self.root)  # temporary file + replace; never through a link

    def get(self, key: str) -> tuple[AttentionMaps, dict]:
        if self.root is None:
            z = self._mem[key]
            return self._decode(z)
        with np.load(self.path(key), allow_pickle=False) as z:
            return self._decode({k: z[k] for k in z.files})

    @staticmethod
    def _decode(z: dict[str, np.ndarray]) -> tuple[AttentionMaps, dict]:
        meta = json.loads(bytes(z["meta"]).decode())
        layers = [LayerInfo(d["index"], d["name"], d["resolution"]) for d in meta["layers"]]
        maps = {}
        for info in layers:
            a = torch.from_numpy(np.asarray(z[f"L{info.index}"]).astype(np.float32))
            if meta["store_dtype"] == "float16":
                lo = torch.from_numpy(np.asarray(z[f"L{info.index}_lo"]))
                scale = torch.from_numpy(np.asarray(z[f"L{info.index}_scale"]))
                a = lo[:, None, None] + a * scale[:, None, None]
            maps[info.index] = a[:, None]  # (S, 1 group, h, w)
        return AttentionMaps(layers, list(meta["steps"]), [GROUP], maps), meta
