"""One registry shape for everything groundkit looks up by name (adapters, recipes, protocols):
``register``, ``get`` with an error that lists what is known, ``names``. Like timm's model registry."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Named objects of one kind. ``loader`` (optional) supplies entries found elsewhere (entry points),
    looked up lazily so that importing groundkit never imports a third party's package."""

    def __init__(self, kind: str, loader: Callable[[], dict[str, Callable[[], T]]] | None = None,
                 aliases: dict[str, str] | None = None):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._loader = loader
        self._aliases = dict(aliases or {})

    def register(self, name: str, item: T, *, replace: bool = True) -> T:
        if not replace and name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = item
        return item

    def _lazy(self) -> dict[str, Callable[[], T]]:
        return self._loader() if self._loader else {}

    def names(self) -> list[str]:
        return sorted(set(self._items) | set(self._lazy()))

    def get(self, name: str) -> T:
        key = self._aliases.get(name, name)
        if key in self._items:
            return self._items[key]
        lazy = self._lazy()
        if key in lazy:
            return lazy[key]()
        raise ValueError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names()) or 'none'}")

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (self._aliases.get(name, name) in self._items or
                                          self._aliases.get(name, name) in self._lazy())

    def __getitem__(self, name: str) -> T:
        try:
            return self.get(name)
        except ValueError as e:
            raise KeyError(str(e)) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
