"""In-memory collections with Stripe's cursor pagination.

Stripe lists are newest first and paged by object id: `starting_after=X` gives the objects created just
before X, `ending_before=X` the ones created just after it. A `Collection` keeps insertion order in a list
plus a position per id, so a cursor jumps straight to its place instead of scanning, and it forgets the
oldest objects past `max_items` so a long benchmark stays bounded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

__all__ = ["Collection", "UnknownCursor"]

T = TypeVar("T")


class UnknownCursor(KeyError):
    pass


class Collection(Generic[T]):
    def __init__(self, max_items: int | None = None) -> None:
        self._max = max_items
        self._items: dict[str, tuple[int, T]] = {}  # id -> (absolute position, item)
        self._order: list[str | None] = []  # absolute position - _offset -> id (None once removed)
        self._offset = 0
        self._head = 0  # index in _order of the oldest slot that may still hold an id

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, object_id: object) -> bool:
        return object_id in self._items

    def get(self, object_id: str) -> T | None:
        entry = self._items.get(object_id)
        return None if entry is None else entry[1]

    def add(self, object_id: str, item: T) -> None:
        self._items[object_id] = (self._offset + len(self._order), item)
        self._order.append(object_id)
        if self._max is not None and len(self._items) > self._max:
            self._evict_oldest()

    def remove(self, object_id: str) -> T | None:
        entry = self._items.pop(object_id, None)
        if entry is None:
            return None
        self._order[entry[0] - self._offset] = None
        return entry[1]

    def newest_first(self) -> Iterator[T]:
        for index in range(len(self._order) - 1, self._head - 1, -1):
            object_id = self._order[index]
            if object_id is not None:
                yield self._items[object_id][1]

    def page(
        self,
        *,
        limit: int,
        starting_after: str | None = None,
        ending_before: str | None = None,
        keep: Callable[[T], bool] | None = None,
    ) -> tuple[list[T], bool]:
        """One page, newest first, and whether more objects lie beyond it in the paging direction."""
        if ending_before is not None:
            start = self._index_of(ending_before) + 1
            picked = self._collect(range(start, len(self._order)), limit, keep)
            more = len(picked) > limit
            return list(reversed(picked[:limit])), more
        start = len(self._order) - 1 if starting_after is None else self._index_of(starting_after) - 1
        picked = self._collect(range(start, self._head - 1, -1), limit, keep)
        return picked[:limit], len(picked) > limit

    def _collect(self, indexes: range, limit: int, keep: Callable[[T], bool] | None) -> list[T]:
        picked: list[T] = []
        for index in indexes:
            object_id = self._order[index]
            if object_id is None:
                continue
            item = self._items[object_id][1]
            if keep is None or keep(item):
                picked.append(item)
                if len(picked) > limit:  # one extra tells whether there is more
                    break
        return picked

    def evict_oldest_while(self, expired: Callable[[T], bool]) -> int:
        """Forget the oldest objects as long as `expired` holds for the oldest one (retention); returns how many."""
        removed = 0
        while self._items:
            while self._order[self._head] is None:
                self._head += 1
            oldest = self._order[self._head]
            assert oldest is not None
            if not expired(self._items[oldest][1]):
                break
            self._evict_oldest()
            removed += 1
        return removed

    def _index_of(self, object_id: str) -> int:
        entry = self._items.get(object_id)
        if entry is None:
            raise UnknownCursor(object_id)
        return entry[0] - self._offset

    def _evict_oldest(self) -> None:
        while self._order[self._head] is None:
            self._head += 1
        oldest = self._order[self._head]
        assert oldest is not None
        del self._items[oldest]
        self._order[self._head] = None
        self._head += 1
        # Compact once half the list is dead, so eviction stays O(1) amortised.
        if self._head > len(self._order) // 2:
            del self._order[: self._head]
            self._offset += self._head
            self._head = 0
