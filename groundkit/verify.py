"""``groundkit checkpoints verify NAME``: check a checkpoint's files before (instead of) loading them.

Generic over model families: every family declares the files it needs as
:class:`~groundkit.core.adapter.Component` s (``Adapter.components(entry)``), and this module checks them

* **presence and size**, and whether a weights file is complete (a safetensors file must be as long as
  its header says, a ``torch.save`` file a whole zip, a shard index must name shards inside the folder);
* **sha256** of the files for which checkpoints.yaml records one;
* with ``deep=True``, **key sets and shapes**: the network the loader would build, on the META device,
  against the file's keys (safetensors header, or a ``weights_only`` memory-mapped ``torch.load``) after
  the loader's own renames.

Nothing is downloaded and nothing is unpickled beyond tensors. :meth:`VerifyReport.text` ends, when
something is missing, with the resolved folder and the exact commands to obtain the files.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from groundkit.core.adapter import Component
from groundkit.core.safeload import CheckpointError, CheckpointMismatchError, check_keys, escaping_link
from groundkit.core.weightfiles import LEGACY_NOTE, file_shapes, sha256_file, weights_integrity

__all__ = ["VerifyReport", "Check", "KeyCheck", "verify_checkpoint"]

OK, MISSING, BAD, WARN, INFO = "ok", "missing", "bad", "warn", "info"
_MARK = {OK: "[ok]     ", MISSING: "[MISSING]", BAD: "[BAD]    ", WARN: "[warn]   ", INFO: "[info]   "}
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".bin", ".pt", ".ckpt")


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
    home: Path | None = None
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
        if self.home is not None:
            lines.append(f"  home:   {self.home}  (GROUNDKIT_HOME{'' if os.environ.get('GROUNDKIT_HOME') else ' unset: default'})")
        for c in self.checks:
            head = f"  {_MARK[c.status]} {c.item}"
            if not c.detail:
                lines.append(head)
                continue
            first, *rest = c.detail.splitlines()
            lines.append(f"{head}: {first}")
            lines.extend("              " + ln for ln in rest)
        n_missing, n_bad = len(self.missing), len(self.problems) - len(self.missing)
        unchecked = "" if self.deep else " (key sets not checked: --no-deep)"
        if self.problems:
            parts = ([f"{n_missing} file(s) missing"] if n_missing else []) + ([f"{n_bad} file(s) bad"] if n_bad else [])
            lines.append("result: " + ", ".join(parts) + unchecked)
        else:
            lines.append("result: all files present and consistent" + unchecked)
        if self.missing and self.source:
            lines.append("to obtain them:")
            lines.extend("  " + ln for ln in self.source.splitlines())
        elif self.problems and self.source:
            lines.append(f"replace the bad files from: {self.source}")
        return "\n".join(lines)


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
        if status == MISSING and any(c.status == MISSING and c.item == item for c in self.r.checks):
            return  # one line per missing file, however many components name it
        self.r.checks.append(Check(status, item, detail))

    def file(self, p: Path, hint: str = "", weights: bool = False) -> bool:
        """Presence, size, completeness (weights) and sha256 of one file; True if it is usable."""
        if p not in self.seen:
            self.seen[p] = self._file(p, hint, weights)
        return self.seen[p]

    def _file(self, p: Path, hint: str, weights: bool) -> bool:
        item = self.rel(p)
        if not p.exists():
            self.add(MISSING, item, hint)
            return False
        link = escaping_link(self.root, p)
        if link is not None:
            what = "it" if link[0] == p else f"{self.rel(link[0])}/"
            self.add(BAD, item, f"{what} is a symbolic link to {link[1]}, outside the checkpoint folder: refused "
                                "(copy the file in instead of linking it)")
            return False
        if p.is_dir():
            self.add(BAD, item, "is a folder, expected a file")
            return False
        size = p.stat().st_size
        if size == 0:
            self.add(BAD, item, "empty file (0 bytes)")
            return False
        detail, status = _human(size), OK
        if weights:
            problem = weights_integrity(p)
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

    def component(self, c: Component) -> None:
        if not c.files:
            self.add(INFO, c.label, c.note)
            return
        existing = [f for f in c.files if f.is_file()]
        if not existing:
            detail = c.note or c.hint
            if len(c.files) > 1:
                names = " or ".join(self.rel(f) for f in c.files if not f.name.endswith(".index.json"))
                detail = f"{c.label} (looked for {names})" + (f"; {c.hint}" if c.hint else "")
            self.add(MISSING, self.rel(c.files[0]), detail)
            self.r.hints.setdefault(self.rel(c.files[0]), c.hint)
            return
        f = existing[0]
        if not self.file(f, c.hint, weights=c.kind == "weights"):
            return
        if c.check is not None:
            try:
                note = c.check()
            except (ValueError, TypeError, KeyError, FileNotFoundError) as exc:
                self.add(BAD, self.rel(f), str(exc))
                return
            if note:
                self.add(OK, self.rel(f), note)
        if c.kind == "weights" and self.deep and c.build is not None:
            self.compare(c, f)

    def compare(self, c: Component, f: Path) -> None:
        item = self.rel(f)
        try:
            got = file_shapes(f)
        except (CheckpointError, OSError) as exc:
            self.add(BAD, item, f"keys: {exc}")
            return
        try:
            model = c.build(set(got))
        except (FileNotFoundError, ValueError, TypeError) as exc:
            self.add(BAD, item, f"keys not checked: {exc}")
            return
        if model is None:  # its config could not be read: reported on the config's line
            return
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        sd, renamed, dropped = c.normalize(model, got) if c.normalize else (dict(got), 0, [])
        kc = KeyCheck(c.label, f, type(model).__name__, len(expected), len(got), {}, renamed, dropped)
        try:
            check_keys(expected, sd, f, what=f"the {c.label} ({type(model).__name__} built from its config)")
        except CheckpointMismatchError as exc:
            kc.error = str(exc)
            self.r.keys.append(kc)
            self.add(BAD, item, "keys: " + kc.error)
            return
        by_id = {id(v): k for k, v in got.items()}  # renames move tensors, never copy: follow them by identity
        kc.mapping = {k: by_id.get(id(sd[k]), k) for k in expected}
        self.r.keys.append(kc)
        extra = ([f"{renamed} renamed"] if renamed else []) + (
            [f"{len(dropped)} tolerated ({', '.join(dropped[:2])}{', ...' if len(dropped) > 2 else ''})"] if dropped else [])
        n_values = sum(_numel(s) for s in expected.values())
        self.add(OK, item, f"keys: all {len(expected)} tensors of {type(model).__name__} present with matching "
                           f"shapes ({n_values / 1e6:.1f} M values)" + (f"; {'; '.join(extra)}" if extra else ""))


def _human(n: int) -> str:
    x = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if x < 1000 or unit == "TB":
            return f"{x:.0f} {unit}" if unit == "B" else f"{x:.1f} {unit}"
        x /= 1000
    return f"{n} B"  # pragma: no cover


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def verify_checkpoint(name_or_path: str | os.PathLike, checkpoints_file: str | os.PathLike | None = None,
                      deep: bool = True) -> VerifyReport:
    """Check a named checkpoint (checkpoints.yaml) or a checkpoint folder; see the module docstring.

    Never raises for a missing or broken file (that is what the report is for); raises ``ValueError`` for
    a name that is neither in checkpoints.yaml nor an existing folder, and for a malformed checkpoints.yaml.
    """
    from groundkit import registry

    entry = registry.entry_for_verify(name_or_path, checkpoints_file)
    root = entry.path
    report = VerifyReport(entry.name, entry.adapter, root, entry.source, deep, home=registry.home_of(checkpoints_file))
    c = _Checker(report, root, entry.sha256, deep)
    if not root.is_dir():
        c.add(INFO, str(root) + "/", "checkpoint folder not found: every file below is missing")
    for f in entry.files:  # what checkpoints.yaml lists (checked before loading by registry.resolve)
        try:
            c.file(registry.confined(root, f, f"checkpoints.yaml: {entry.name}.files"), entry.source,
                   weights=Path(f).suffix in WEIGHT_SUFFIXES)
        except CheckpointError as exc:
            c.add(BAD, f, str(exc))
    try:
        components = registry.get_adapter_class(entry.adapter).components(entry.adapter_entry())
    except (CheckpointError, ValueError) as exc:
        c.add(BAD, "layout", str(exc))
        components = []
    for comp in components:
        c.component(comp)
    for rel in entry.sha256:  # recorded hashes of files no check above looked at
        p = root / rel
        if p not in c.seen:
            c.file(p, entry.source, weights=Path(rel).suffix in WEIGHT_SUFFIXES)
    return report
