"""One registry shape for everything groundkit looks up by name (adapters, recipes, thresholds, token filters,
BBM variants, metric protocols, datasets): ``register``, ``get`` with an error that lists what is known,
``names``. Like timm's model registry.

A registry is filled three ways, none of them an import side effect: a declared table of built-ins
(name -> ``"module:attr"``, imported on first ``get``), the entry points of its group (``groundkit.<kind>s``,
listed without importing the third party's package) and ``register`` at run time. A plugin that fails to
import is recorded, warned about once (naming its package) and skipped; asked for by name it raises
:class:`PluginError`; one that replaces a built-in falls back to the built-in.
"""
from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping
from importlib import metadata
from typing import Any, Generic, TypeVar

T = TypeVar("T")

__all__ = ["PluginError", "PluginWarning", "Registry", "import_target", "package_of", "reason"]


class PluginError(ValueError):
    """An installed plugin cannot be used (its import fails); the message names its package."""


class PluginWarning(UserWarning):
    """A broken plugin was skipped (one warning per package and name)."""


def import_target(target: str) -> Any:
    """``"package.module:attr"`` -> the object (the form of entry points and of the built-in tables)."""
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def package_of(ep) -> str:
    """The distribution that declares an entry point (its module when the distribution is unknown)."""
    dist = getattr(ep, "dist", None)
    name = getattr(dist, "name", None) if dist is not None else None
    return name or ep.value.partition(":")[0]


def reason(exc: BaseException) -> str:
    """One line: the exception's type and its (shortened) text."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text[:200]}"


class Registry(Generic[T]):
    """Named objects of one kind.

    ``builtins``: the declared table of built-ins (name -> ``"module:attr"``); ``group``: the entry-point group
    third parties declare theirs under; ``loader`` (optional): more lazy entries (name -> a function that
    returns the object). Nothing is imported until a name is asked for, so listing is cheap and importing
    groundkit never imports a third party's package."""

    def __init__(self, kind: str, loader: Callable[[], dict[str, Callable[[], T]]] | None = None,
                 aliases: dict[str, str] | None = None, *, builtins: Mapping[str, str] | None = None,
                 group: str | None = None):
        self.kind = kind
        self.group = group
        self.builtins = dict(builtins or {})
        self.broken: dict[str, str] = {}  # name -> "<kind> plugin 'x' (package P) why", for every broken plugin seen
        self.packages: dict[str, str] = {}  # plugin name -> the distribution that declares it
        self._items: dict[str, T] = {}
        self._eps: tuple[tuple[str, ...], list] | None = None  # (sys.path, entry points) of the last listing
        self._loader = loader
        self._aliases = dict(aliases or {})

    def register(self, name: str, item: T, *, replace: bool = True) -> T:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"register a {self.kind}: name: expected non-empty text, got {name!r:.60}")
        if not replace and name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = item
        return item

    def unregister(self, name: str) -> None:
        """Forget a run-time registration (a built-in or an entry point it replaced answers again)."""
        self._items.pop(name, None)

    # ------------------------------------------------------------------ plugins
    def entry_points(self) -> list:
        """This registry's entry points (an unreadable ``*.dist-info`` is recorded, not raised)."""
        if self.group is None:
            return []
        path = tuple(sys.path)
        if self._eps is not None and self._eps[0] == path:  # listed again only when where packages live changes
            return self._eps[1]
        try:
            eps = list(metadata.entry_points(group=self.group))
        except Exception as exc:  # noqa: BLE001 - a malformed *.dist-info must not break the built-ins
            self.mark_broken("<entry points>", f"cannot be listed ({reason(exc)})")
            return []
        for ep in eps:
            self.packages.setdefault(ep.name, package_of(ep))
        self._eps = (path, eps)
        return eps

    def mark_broken(self, name: str, why: str) -> str:
        """Record a broken plugin and warn once (naming the package); returns the one-line reason."""
        line = f"{self.kind} plugin {name!r} (package {self.packages.get(name, name)}) {why}"
        if name not in self.broken:
            self.broken[name] = line
            warnings.warn(f"{line}; skipped (built-ins and other plugins still work)", PluginWarning, stacklevel=3)
        return line

    def is_builtin(self, name: str) -> bool:
        """A built-in that no installed package replaced."""
        return name in self.builtins and self.packages.get(name, "groundkit") == "groundkit"

    def _plugin(self, ep) -> Callable[[], T]:
        builtin = self.builtins.get(ep.name)

        def load() -> T:
            try:
                return ep.load()
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - a third party's import may raise anything
                line = self.mark_broken(ep.name, f"fails to import ({reason(exc)})")
                if builtin is not None:
                    return import_target(builtin)
                raise PluginError(line) from None
        return load

    def _lazy(self) -> dict[str, Callable[[], T]]:
        found: dict[str, Callable[[], T]] = {name: (lambda t=target: import_target(t)) for name, target in self.builtins.items()}
        for ep in self.entry_points():
            found[ep.name] = self._plugin(ep)
        if self._loader:
            found.update(self._loader())
        return found

    # ------------------------------------------------------------------ lookups
    def names(self) -> list[str]:
        return sorted(set(self._items) | set(self._lazy()))

    def get(self, name: str) -> T:
        key = self._aliases.get(name, name) if isinstance(name, str) else name
        if isinstance(key, str) and key in self._items:
            return self._items[key]
        lazy = self._lazy()
        if isinstance(key, str) and key in lazy:
            return lazy[key]()
        raise ValueError(f"unknown {self.kind} {name!r:.80}; known: {', '.join(self.names()) or 'none'}")

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = self._aliases.get(name, name)
        return key in self._items or key in self.builtins or key in self._lazy()

    def __getitem__(self, name: str) -> T:
        try:
            return self.get(name)
        except ValueError as e:
            raise KeyError(str(e)) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
