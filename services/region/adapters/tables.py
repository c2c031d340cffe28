"""Writes to the region worker's tables from outside a stream event (the stall detector's timer,
the retention sweep), naming the case's partition.

Inside an agent Faust writes a table to the partition of the event being handled, and that is
also how its RocksDB store picks the partition's database; a timer task has no event, so the
store would refuse. These helpers write the local store of the named partition directly and send
the changelog record to the same partition. The memory store needs no partition.
"""

from __future__ import annotations

from typing import Any

from faust.stores.rocksdb import Store as RocksDBStore


def put_local(table: Any, key: str, value: Any, partition: int) -> None:
    store = table.data
    if isinstance(store, RocksDBStore):
        # faust offers no public call for a write without an event; these are the ones its own
        # changelog recovery (apply_changelog_batch) and _set use.
        store._db_for_partition(partition).put(store._encode_key(key), store._encode_value(value))
    else:
        store[key] = value


def delete_local(table: Any, key: str, partition: int) -> None:
    store = table.data
    if isinstance(store, RocksDBStore):
        store._db_for_partition(partition).delete(store._encode_key(key))
    else:
        store.pop(key, None)


def write(table: Any, key: str, value: Any, partition: int) -> Any:
    """Store `value` under `key` and send it to the changelog; returns the send, awaitable for its ack."""
    put_local(table, key, value, partition)
    return table.send_changelog(partition, key, value)


def delete(table: Any, key: str, partition: int) -> Any:
    """Delete `key` and send a tombstone to the changelog; returns the send, awaitable for its ack."""
    delete_local(table, key, partition)
    # A null value (raw, not JSON "null") is what log compaction treats as a delete.
    return table.send_changelog(partition, key, None, value_serializer="raw")
