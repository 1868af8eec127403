"""Named plug-ins: one registry per plug-in point, and the one list of allowed config values.

    DISTANCES = Registry("diversity.metric")

    @DISTANCES.register("levenshtein")
    def levenshtein(...): ...

    DISTANCES["levenshtein"]           # the plug-in
    DISTANCES.names()                  # ['levenshtein', ...]: what the config accepts
    DISTANCES.check(value)             # ConfigError naming the key and the allowed values

The config schema validates a key against its registry (``check``), so adding a plug-in never
means editing a list of names somewhere else.
"""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from ded.core.errors import UserError

T = TypeVar("T")


class ConfigError(UserError, ValueError):
    """A config value outside its allowed range or vocabulary; the message names the key.
    ``key``: the key the message starts with, where the raiser knows it (``ded.config.to_dataclasses``
    puts a relative one under the path of the node that raised it)."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


class Registry(Generic[T]):
    def __init__(self, key: str):
        self.key = key  # the config key whose values this registry holds (for error messages)
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T | None = None) -> Callable[[T], T] | T:
        """``@REG.register("name")`` on a function or class, or ``REG.register("name", obj)``."""
        if item is not None:
            return self._add(name, item)
        return lambda obj: self._add(name, obj)

    def _add(self, name: str, item: T) -> T:
        if name in self._items and self._items[name] is not item:
            raise ValueError(f"{self.key}: {name!r} is registered twice")
        self._items[name] = item
        return item

    def unregister(self, name: str) -> None:
        self._items.pop(name, None)

    def names(self) -> list[str]:
        return list(self._items)

    def check(self, name: str, key: str | None = None) -> str:
        if name not in self._items:
            raise ConfigError(f"{key or self.key}: unknown value {name!r}; allowed: {self.names()}", key or self.key)
        return name

    def __getitem__(self, name: str) -> T:
        return self._items[self.check(name)]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def items(self):
        return self._items.items()

    def __len__(self) -> int:
        return len(self._items)
