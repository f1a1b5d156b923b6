"""One generic name registry for models, transfer methods and pruning criteria (timm style)."""
from __future__ import annotations

import sys
from typing import Callable, Generic, TypeVar

from .errors import ConfigError, suggest

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories. `register` is a decorator; `create` builds by name."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Callable[..., T]] = {}

    def register(self, name: str | None = None) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def deco(fn: Callable[..., T]) -> Callable[..., T]:
            key = name or fn.__name__
            if key in self._entries:
                raise ValueError(f"{self.kind} {key!r} registered twice")
            self._entries[key] = fn
            return fn

        return deco

    def get(self, name: str) -> Callable[..., T]:
        try:
            return self._entries[name]
        except KeyError:
            valid = ", ".join(sorted(self._entries))
            hint = suggest(name, self._entries)
            near = f" (did you mean {hint!r}?)" if hint else ""
            raise ConfigError(f"unknown {self.kind} {name!r}{near}; valid names: {valid}") from None

    def describe(self, name: str) -> str:
        """One line about an entry (`shiftkit models`, `transfer-methods`): the first sentence of its
        module's docstring for a class (one method per file: the module says what it is), of its own
        docstring for a function (a model factory, a configured variant); the other one as fallback."""
        entry = self.get(name)
        module = getattr(sys.modules.get(entry.__module__), "__doc__", None)
        docs = (module, entry.__doc__) if isinstance(entry, type) else (entry.__doc__, module)
        for doc in docs:
            if doc and doc.strip():
                text = " ".join(doc.strip().split("\n\n")[0].split())
                head, dot, _ = text.partition(". ")
                return head + dot.strip()
        return ""

    def create(self, name: str, *args, **kwargs) -> T:
        return self.get(name)(*args, **kwargs)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries
