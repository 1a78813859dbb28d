"""A small least-recently-used cache, safe across threads: the stages' open decoders and
sessions, the viewer's frame indexes."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LruCache(Generic[K, V]):
    """At most ``size`` values by key; ``on_evict`` gets each value the cache drops (called
    outside its lock: closing a decoder may take a while)."""

    def __init__(self, size: int, on_evict: Callable[[V], None] = lambda value: None) -> None:
        self._size = size
        self._on_evict = on_evict
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        """The value of ``key``, now the most recently used; None if absent."""
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def pop(self, key: K) -> V | None:
        """Take the value of ``key`` out of the cache (the caller owns it now)."""
        with self._lock:
            return self._items.pop(key, None)

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            evicted = [self._items.popitem(last=False)[1] for _ in range(len(self._items) - self._size)]
        for old in evicted:
            self._on_evict(old)

    def clear(self) -> None:
        with self._lock:
            values, self._items = list(self._items.values()), OrderedDict()
        for value in values:
            self._on_evict(value)
