"""A Faust worker's persistent table store (RocksDB through `rocksdict`), kept in step with the
changelog topics that back it.

Faust writes a table change to the local store at once and to the table's changelog topic soon
after; each partition's store remembers the changelog offset it holds, and a restart reads the
changelog only from there (the tail). After a crash the local store may hold a change that never
reached the changelog, while the input event that caused it is read again and found already
handled: its output would never be sent. So a local store is reused only after a clean stop: the
worker leaves a marker once its stop flushed everything to Kafka, and at start a store without
the marker is removed, and the tables are rebuilt from their changelogs alone, as in memory.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Literal

from meshkernel.private_files import private_file, private_folder

log = logging.getLogger(__name__)

CLEAN_STOP_MARKER = "clean-stop"
StoreKind = Literal["rocksdb", "memory"]


def store_url(kind: StoreKind) -> str:
    return "rocksdb://" if kind == "rocksdb" else "memory://"


def open_local_store(datadir: Path, tabledir: Path) -> bool:
    """At start: keep the tables of a cleanly stopped worker, remove those of any other.

    Returns whether the local store is reused. The marker is removed either way, so that a
    crash of this run leaves none behind."""
    private_folder(datadir)
    marker = datadir / CLEAN_STOP_MARKER
    clean = marker.exists()
    marker.unlink(missing_ok=True)
    if tabledir.exists() and not clean:
        shutil.rmtree(tabledir)
        log.warning(
            "the local table store was not stopped cleanly; rebuilding the tables from their changelogs",
            extra={"path": str(tabledir)},
        )
    elif tabledir.exists():
        log.info(
            "reusing the local table store; reading the changelogs from its offsets", extra={"path": str(tabledir)}
        )
    return clean and tabledir.exists()


def mark_clean_stop(datadir: Path) -> None:
    """After a stop that flushed every table change to Kafka: the local store may be reused."""
    private_file(datadir / CLEAN_STOP_MARKER)
