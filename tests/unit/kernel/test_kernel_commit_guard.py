"""Commits stop at the last handled event, on faust's own consumer bookkeeping.

The rebalance window, without a broker or timing luck: a worker handles offsets 100 and 101 of a
partition; a rebalance revokes it (faust forgets the partition's committed offset); the stream
skips 102-104, fetched before the rebalance, and faust acknowledges them unhandled. Faust alone
then commits 105, and the new assignment never reads 102-104: the loss the scale-out runs saw
after a region worker's SIGKILL. With the guard the commit stays at 102 and the partition is read
from there again.
"""

from __future__ import annotations

import faust
import pytest
from faust.types import TP
from faust.types.tuples import Message

from meshkernel.commit_guard import CommitGuard

TOPIC = "referral.events.v1"
PARTITION = TP(TOPIC, 0)


@pytest.fixture
def consumer():
    app = faust.App("commit-guard-test", broker="kafka://127.0.0.1:1")
    app.topics._acking_topics.add(TOPIC)  # what subscribing an agent to the topic does
    consumer = app.consumer
    consumer._committed_offset[PARTITION] = 100  # read from the broker at assignment
    return consumer


def _message(offset: int) -> Message:
    return Message(TOPIC, PARTITION.partition, offset, 0.0, 0, None, b"case", b"event", None, tp=PARTITION)


def _rebalance_skipping(consumer, guard: CommitGuard | None, handled: range, skipped: range) -> None:
    for offset in handled:
        if guard is not None:
            guard.on_handled(PARTITION, offset)
        consumer.ack(_message(offset))
    consumer._committed_offset.pop(PARTITION)  # faust's on_partitions_revoked
    if guard is not None:
        guard.on_revoked([PARTITION])
    for offset in skipped:  # skipped by the stream for their old generation, and acknowledged
        consumer.ack(_message(offset))


def test_without_the_guard_faust_commits_over_events_it_skipped(consumer):
    _rebalance_skipping(consumer, None, handled=range(100, 102), skipped=range(102, 105))

    assert consumer._filter_committable_offsets([PARTITION]) == {PARTITION: 105}


def test_the_guard_stops_the_commit_after_the_last_handled_event(consumer):
    guard = CommitGuard()
    guard.install(consumer)
    for offset in range(100, 102):
        guard.on_handled(PARTITION, offset)
        consumer.ack(_message(offset))
    for offset in range(102, 105):  # skipped and acknowledged while the partition is still ours
        consumer.ack(_message(offset))

    assert consumer._filter_committable_offsets([PARTITION]) == {PARTITION: 102}


def test_after_a_revocation_nothing_is_committed_until_an_event_is_handled_again(consumer):
    guard = CommitGuard()
    guard.install(consumer)
    _rebalance_skipping(consumer, guard, handled=range(100, 102), skipped=range(102, 105))

    assert consumer._filter_committable_offsets([PARTITION]) == {}


def test_handled_events_are_committed_as_before(consumer):
    guard = CommitGuard()
    guard.install(consumer)
    guard.install(consumer)  # once per consumer
    for offset in range(100, 110):
        guard.on_handled(PARTITION, offset)
        consumer.ack(_message(offset))

    assert consumer._filter_committable_offsets([PARTITION]) == {PARTITION: 110}


def test_topics_the_guard_never_saw_are_left_to_faust():
    guard = CommitGuard()
    guard.on_handled(PARTITION, 5)

    assert guard.cap(TP("other-topic", 0), 42) == 42
    assert guard.cap(PARTITION, 42) == 6
    assert guard.cap(PARTITION, None) is None


def test_acknowledgements_past_the_cap_count_once_their_events_are_handled(consumer):
    guard = CommitGuard()
    guard.install(consumer)
    for offset in range(100, 102):
        guard.on_handled(PARTITION, offset)
        consumer.ack(_message(offset))
    for offset in range(102, 105):  # skipped and acknowledged unhandled
        consumer.ack(_message(offset))
    assert consumer._filter_committable_offsets([PARTITION]) == {PARTITION: 102}
    consumer._committed_offset[PARTITION] = 102  # committed

    for offset in range(102, 106):  # read again, handled, acknowledged (105 is new)
        guard.on_handled(PARTITION, offset)
        consumer.ack(_message(offset))

    assert consumer._filter_committable_offsets([PARTITION]) == {PARTITION: 106}
