"""Due-time index: which deadlines are due now, in work proportional to what is due.

A binary heap of ``(due, case_id, deadline)`` tuples. Cancelling is lazy: the engine's per-case
state is the truth, and an entry whose deadline is no longer pending in that state is dropped
when it reaches the top (``is_live`` decides). Finding what is due costs O(k log n) for k due
entries, independent of how many cases are open; an idle tick costs one comparison.

The index holds nothing durable. After a restart it is rebuilt from the per-case states with
``rebuild`` (one ``heapify``, O(n)). When cancelled entries outnumber live ones the heap is
compacted, so churn (deadlines moved again and again) cannot grow it without bound.

Memory: one 3-tuple per entry (64 bytes + the list slot); ``due`` is a float shared with the
deadline, the case id and the deadline object are shared with the state.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from typing import Any

Entry = tuple[float, str, Any]  # (due, case_id, deadline)

_COMPACT_MIN = 4096


class DueIndex:
    __slots__ = ("_heap", "_is_live", "_stale")

    def __init__(self, is_live: Callable[[str, Any], bool]) -> None:
        self._heap: list[Entry] = []
        self._stale = 0
        self._is_live = is_live

    def __len__(self) -> int:
        """Entries held, including cancelled ones not yet dropped."""
        return len(self._heap)

    @property
    def live(self) -> int:
        return len(self._heap) - self._stale

    def push(self, due: float, case_id: str, deadline: Any) -> None:
        heapq.heappush(self._heap, (due, case_id, deadline))

    def cancelled(self, count: int = 1) -> None:
        """Note that ``count`` entries in the heap are no longer live (dropped lazily)."""
        self._stale += count
        if self._stale > _COMPACT_MIN and self._stale > len(self._heap) // 2:
            self.compact()

    def compact(self) -> None:
        live = self._is_live
        self._heap = [e for e in self._heap if live(e[1], e[2])]
        heapq.heapify(self._heap)
        self._stale = 0

    def rebuild(self, entries: Iterable[Entry]) -> None:
        """Replace the contents (after a restart or partition assignment): O(n) heapify."""
        self._heap = list(entries)
        heapq.heapify(self._heap)
        self._stale = 0

    def next_due(self) -> float | None:
        """The earliest live due time, or None. Drops cancelled entries found at the top."""
        heap, live = self._heap, self._is_live
        while heap:
            due, case_id, deadline = heap[0]
            if live(case_id, deadline):
                return due
            heapq.heappop(heap)
            self._stale = max(0, self._stale - 1)
        return None

    def pop_due(self, now: float) -> Iterator[Entry]:
        """Yield live entries with ``due <= now``, earliest first, removing them.

        Entries pushed while iterating (follow-ups already due) are yielded too.
        """
        heap, live = self._heap, self._is_live
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            if live(entry[1], entry[2]):
                yield entry
            else:
                self._stale = max(0, self._stale - 1)
            heap = self._heap  # compact() may have replaced the list
