"""A site's terms file: read safely, checked entry by entry, and merged into the built-in vocabulary.

The file comes from outside the package, so reading it is defensive: a size limit, UTF-8 only, and YAML
anchors and aliases refused before ``yaml.safe_load`` (an alias bomb would otherwise expand in memory).
Its own entries are checked before merging so that errors give positions in that file rather than in the
merged vocabulary.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from groundkit.reports.lexicon_fields import TOP_KEYS, LexiconError, check_pattern, fail, observation_entry, raw_list

__all__ = ["MAX_TERMS_BYTES", "merge_terms", "precheck_terms", "read_terms_file"]

MAX_TERMS_BYTES = 2_000_000


def _parse_yaml(text: str, src: str) -> Any:
    """YAML without anchors or aliases (refused by walking the events before anything is built)."""
    import yaml

    try:
        for ev in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(ev, yaml.AliasEvent) or getattr(ev, "anchor", None):
                raise LexiconError(f"{src}: YAML anchors and aliases are not allowed in a terms file "
                                   f"(line {ev.start_mark.line + 1})")
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise LexiconError(f"{src}: not valid YAML: {e}") from None


def read_terms_file(path: Path) -> dict[str, Any]:
    """YAML (safe, no anchors/aliases) or JSON mapping; every failure names the file."""
    src = str(path)
    try:
        size = path.stat().st_size
    except OSError as e:
        raise LexiconError(f"{src}: cannot read terms file: {e.strerror or e}") from None
    if size > MAX_TERMS_BYTES:
        raise LexiconError(f"{src}: terms file is {size} bytes, more than the {MAX_TERMS_BYTES} allowed")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise LexiconError(f"{src}: cannot read terms file as UTF-8 text: {e}") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise LexiconError(f"{src}: not valid JSON: {e}") from None
    else:
        data = _parse_yaml(text, src)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise LexiconError(f"{src}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def precheck_terms(extra: dict[str, Any], source: str, base: dict[str, Any]) -> None:
    """Check a terms file's own pattern entries before merging, so that errors give positions in that file."""
    words = base.get("words", {})
    adverbs = tuple(words.get("adverbs", ())) + tuple((extra.get("words") or {}).get("adverbs", []) or [])
    be = tuple(words.get("be", ()))
    obs = extra.get("observations")
    names = set(base.get("observations", {})) | (set(obs) if isinstance(obs, dict) else set())
    if isinstance(obs, dict):
        for name, pats in obs.items():
            if not isinstance(pats, list):
                raise fail(source, f"observations.{name}", "expected a list of patterns")
            for i, p in enumerate(pats):
                observation_entry(source, f"observations.{name}[{i}]", str(name), p, adverbs, be, names)
    for i, p in enumerate(raw_list(source, "not_findings", extra.get("not_findings"))):
        check_pattern(source, f"not_findings[{i}]", p, adverbs, be)
    cues = extra.get("cues")
    if isinstance(cues, dict):
        for k, v in cues.items():
            if k == "temporal" and isinstance(v, dict):
                for t, pats in v.items():
                    for i, p in enumerate(raw_list(source, f"cues.temporal.{t}", pats)):
                        check_pattern(source, f"cues.temporal.{t}[{i}]", p, adverbs, be)
            elif k != "temporal":
                for i, p in enumerate(raw_list(source, f"cues.{k}", v)):
                    check_pattern(source, f"cues.{k}[{i}]", p, adverbs, be)


def merge_terms(base: dict[str, Any], extra: dict[str, Any], source: str) -> dict[str, Any]:
    """``base`` extended by ``extra``: lists appended, mappings merged, ``replace:`` paths replaced."""
    out = copy.deepcopy(base)
    replace = extra.get("replace") or []
    if not isinstance(replace, list) or not all(isinstance(p, str) for p in replace):
        raise fail(source, "replace", "expected a list of dotted paths (e.g. 'cues.uncertainty_pre')")
    unknown = set(extra) - TOP_KEYS
    if unknown:
        raise fail(source, sorted(unknown)[0], f"unknown key (known: {', '.join(sorted(TOP_KEYS))})")

    def walk(dst: dict[str, Any], src: dict[str, Any], prefix: str) -> None:
        for k, v in src.items():
            path = f"{prefix}{k}"
            if path == "replace" or path == "version":
                continue
            if path in replace or k not in dst:
                dst[k] = copy.deepcopy(v)
            elif isinstance(dst[k], dict) and isinstance(v, dict):
                walk(dst[k], v, path + ".")
            elif isinstance(dst[k], list) and isinstance(v, list):
                dst[k] = dst[k] + [x for x in v if x not in dst[k]]
            elif isinstance(dst[k], (list, dict)):
                raise fail(source, path, f"expected a {type(dst[k]).__name__} like the built-in vocabulary, "
                                         f"got {type(v).__name__}")
            else:
                dst[k] = v

    walk(out, extra, "")
    return out
