"""A local table store is reused only after a clean stop (meshkernel/table_store.py)."""

from __future__ import annotations

from meshkernel.private_files import is_private
from meshkernel.table_store import CLEAN_STOP_MARKER, mark_clean_stop, open_local_store, store_url


def a_store(tmp_path):
    datadir = tmp_path / "region-data"
    tabledir = datadir / "v1" / "tables"
    (tabledir / "cases-0.db").mkdir(parents=True)
    (tabledir / "cases-0.db" / "CURRENT").write_text("MANIFEST-000001\n")
    return datadir, tabledir


def test_a_cleanly_stopped_store_is_reused_and_its_marker_taken_away(tmp_path):
    datadir, tabledir = a_store(tmp_path)
    mark_clean_stop(datadir)
    assert is_private(datadir / CLEAN_STOP_MARKER)
    assert open_local_store(datadir, tabledir) is True
    assert (tabledir / "cases-0.db" / "CURRENT").exists()
    # A crash of this run leaves no marker behind, so the next start would not trust the store.
    assert not (datadir / CLEAN_STOP_MARKER).exists()


def test_a_store_without_the_marker_is_removed_so_the_tables_come_from_the_changelogs(tmp_path):
    datadir, tabledir = a_store(tmp_path)
    assert open_local_store(datadir, tabledir) is False
    assert not tabledir.exists()


def test_a_first_start_has_nothing_to_reuse(tmp_path):
    datadir = tmp_path / "new"
    assert open_local_store(datadir, datadir / "v1" / "tables") is False
    assert is_private(datadir)


def test_store_urls():
    assert store_url("rocksdb") == "rocksdb://"
    assert store_url("memory") == "memory://"
