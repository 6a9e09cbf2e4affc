"""Reading the YAML files a user or a downloaded checkpoint hands groundkit (``checkpoints.yaml``, a checkpoint
folder's ``groundkit.yaml``) with bounded work, and quoting their values in messages with bounded length.

* the safe loader only (no tags that build objects);
* no anchors or aliases (``&a`` / ``*a``): a few hundred bytes of nested aliases expand to gigabytes when the
  value is walked or formatted (a "billion laughs" file); groundkit's files never need them, so any is refused
  with the file and line named;
* at most :data:`MAX_YAML_BYTES` bytes, and nesting too deep for the parser is an error, not a crash;
* :func:`short` quotes a value in at most ~80 characters, so no message ever formats a whole loaded value.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

__all__ = ["MAX_YAML_BYTES", "read_yaml", "short"]

MAX_YAML_BYTES = 1_000_000


def short(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters (the cut says how long the whole was)."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a hostile or broken __repr__
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 15] + f"... ({len(text)} chars)"


def _loader():
    import yaml

    class NoAliasSafeLoader(yaml.SafeLoader):
        """SafeLoader that refuses anchors and aliases instead of expanding them."""

        def compose_node(self, parent, index):
            event = self.peek_event()
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
                raise yaml.composer.ComposerError(
                    None, None, "YAML anchors and aliases (&name / *name) are not allowed in groundkit's files "
                    "(an alias can expand a small file into gigabytes); write the values out", event.start_mark)
            return super().compose_node(parent, index)

    return NoAliasSafeLoader


def read_yaml(path: str | os.PathLike, what: str = "") -> Any:
    """Parse a YAML file with the safe loader, refusing anchors/aliases and files over :data:`MAX_YAML_BYTES`;
    every error is a ``ValueError`` (``FileNotFoundError`` when missing) that names the file."""
    import yaml

    path = Path(path)
    suffix = f" ({what})" if what else ""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: missing{suffix}") from None
    if size > MAX_YAML_BYTES:
        raise ValueError(f"{path}: {size} bytes, more than the {MAX_YAML_BYTES} a groundkit YAML file may have{suffix}")
    try:
        with open(path, "rb") as fh:
            stream = io.StringIO(fh.read(MAX_YAML_BYTES + 1).decode("utf-8"))
        stream.name = str(path)  # marks in PyYAML's messages name the file
        return yaml.load(stream, Loader=_loader())  # noqa: S506 - a SafeLoader subclass
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: missing{suffix}") from None
    except RecursionError:
        raise ValueError(f"{path}: not valid YAML{suffix} (nested too deeply)") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid YAML{suffix} ({_first_lines(str(e))})") from None


def _first_lines(text: str, limit: int = 300) -> str:
    text = " ".join(ln.strip() for ln in text.splitlines() if ln.strip())
    return text if len(text) <= limit else text[:limit] + "..."
