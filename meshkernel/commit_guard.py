"""Offsets are committed only up to events a worker finished handling.

faust-streaming 0.15.3 acknowledges, without handing it to the agent, every message its stream
skips because it was fetched before a rebalance (the consumer generation changed, or the flow
was stopped for the rebalance). After a revocation it also forgets the committed offset it checks
acknowledgements against, so it takes each of those. Its commit task then commits them, during
the rebalance too (Kafka accepts commits from the current generation until the group completes
the rebalance); the new assignment starts reading after them, and those events are never handled.
This is how a region worker lost events, with the group's lag at 0, when rebalances followed each
other on a loaded machine (the scale-out run around a SIGKILL: one assignment now and then, 34 in
one run; services/region/README.md).

`CommitGuard` caps each commit of a partition at the offset after the last event the worker
handled in it since the partition was last assigned; `meshkernel.streams.decoded_events` tells it
what was handled, `make_app` installs it. A skipped message lies beyond every handled one (a
partition's events are handled in order), so it is read again after the rebalance instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

NewOffset = Callable[[Any], int | None]


class CommitGuard:
    def __init__(self) -> None:
        self.handled: dict[Any, int] = {}  # partition (faust TP) -> last offset handled
        self.topics: set[str] = set()  # topics whose events go through the guard

    def on_handled(self, partition: Any, offset: int) -> None:
        self.topics.add(partition.topic)
        if offset > self.handled.get(partition, -1):
            self.handled[partition] = offset

    def on_revoked(self, partitions: Iterable[Any]) -> None:
        for partition in partitions:
            self.handled.pop(partition, None)

    def cap(self, partition: Any, offset: int | None) -> int | None:
        """The offset faust would commit, at most one past the last handled event."""
        if offset is None or partition.topic not in self.topics:
            return offset
        last = self.handled.get(partition)
        if last is None:
            return None
        return min(offset, last + 1)

    def install(self, consumer: Any) -> None:
        """Wrap the consumer's choice of the offset to commit (`Consumer._new_offset`, the only
        place faust's commit path takes it from); once per consumer."""
        if getattr(consumer, "_mesh_commit_guard", None) is self:
            return
        chosen: NewOffset = consumer._new_offset

        def new_offset(partition: Any) -> int | None:
            # The acknowledgements faust takes off its books past the cap come again when their
            # events are read again after the rebalance, and then count.
            return self.cap(partition, chosen(partition))

        consumer._new_offset = new_offset
        consumer._mesh_commit_guard = self
