"""One registry for capsule's extension points (pipeline stages and units, search algorithms):
items by name, in order, and what installed packages add through an entry-point group.

An entry point names a module that registers when imported, or a function that does; the group
is loaded the first time the registry is read, in every process that reads it (a trial's own
process included), so a package installed beside capsule extends the CLI, the search loop and
the trials alike. Only installed code is loaded: nothing a capsule says chooses a plugin.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import entry_points
from typing import Generic, Protocol, TypeVar

from capsule.errors import CapsuleError


class Named(Protocol):
    @property
    def name(self) -> str: ...


T = TypeVar("T", bound=Named)


class Registry(Generic[T]):
    def __init__(
        self, kind: str, group: str | None, check: Callable[[T], None] | None = None
    ) -> None:
        self.kind = kind  # what an item is, for messages ("stage", "algorithm")
        self.group = group  # the entry-point group installed packages register through
        self.check = check  # raises CapsuleError for an item this registry cannot take
        self._items: list[T] = []
        self._loaded = False

    def register(self, item: T, after: str | None = None) -> T:
        """Add `item` after the item named `after` (default: last); a taken name is refused."""
        if self.check is not None:
            self.check(item)
        names = [i.name for i in self._items]
        if item.name in names:
            raise CapsuleError(f"{self.kind} {item.name!r} is registered already")
        if after is not None and after not in names:
            raise CapsuleError(f"no {self.kind} {after!r} to register after")
        self._items.insert(len(names) if after is None else names.index(after) + 1, item)
        return item

    def unregister(self, name: str) -> None:
        self._items = [i for i in self._items if i.name != name]

    @contextmanager
    def registered(self, item: T, after: str | None = None) -> Iterator[T]:
        """`item` registered for the duration, e.g. in a test."""
        self.load()
        self.register(item, after)
        try:
            yield item
        finally:
            self.unregister(item.name)

    def items(self) -> tuple[T, ...]:
        self.load()
        return tuple(self._items)

    def names(self) -> list[str]:
        return [i.name for i in self.items()]

    def find(self, name: str) -> T | None:
        return next((i for i in self.items() if i.name == name), None)

    def load(self) -> None:
        """The installed packages' items, once (also what `items` does first). A plugin that
        fails to load is an error naming it, every time the registry is read: never a registry
        silently missing what it would have added."""
        if self._loaded or self.group is None:
            return
        self._loaded = True
        try:
            for point in sorted(entry_points(group=self.group), key=lambda p: p.name):
                try:
                    found = point.load()
                    if callable(found) and not isinstance(found, type):
                        found()
                except Exception as exc:  # a plugin's own errors, whatever their type
                    package = point.dist.name if point.dist is not None else "?"
                    raise CapsuleError(
                        f"{self.group} entry point {point.name} ({package}): "
                        f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
                    ) from None
        except CapsuleError:
            self._loaded = False
            raise
