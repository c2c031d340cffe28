"""The notify database setting: a production start names its database; local mode keeps the
embedded SQLite file; the store's async face runs its calls off the event loop."""

from __future__ import annotations

import asyncio
import threading

import pytest

from meshkernel.config import MeshSettings
from services.notify.adapters.store import NotifyStore
from services.notify.paths import NotifyPaths, database_problem


def test_a_production_start_without_a_notify_database_is_refused_naming_the_setting():
    problem = database_problem(MeshSettings(mode="production"), "notify")
    assert problem is not None and problem.startswith("MESH_NOTIFY_DATABASE_URL is not set")


@pytest.mark.parametrize("url", ["postgresql+psycopg://notify@db/notify", "sqlite:////srv/notify/notify.db"])
def test_a_production_start_with_a_named_database_may_go_on(url):
    config = MeshSettings(mode="production", notify_database_url=url)
    assert database_problem(config, "notify") is None
    assert NotifyPaths.of(config).database_url == url


def test_local_mode_keeps_the_embedded_sqlite_file_in_the_state_folder(tmp_path):
    config = MeshSettings(mode="local", state_dir=tmp_path)
    assert database_problem(config, "notify") is None
    assert NotifyPaths.of(config).database_url == f"sqlite:///{tmp_path / 'notify' / 'notify.db'}"


def test_the_check_is_notify_only():
    assert database_problem(MeshSettings(mode="production"), "region") is None


async def test_store_calls_through_the_async_face_run_in_the_stores_threads(tmp_path):
    store = NotifyStore.open(f"sqlite:///{tmp_path / 'notify.db'}")
    try:
        seen: list[str] = []
        original = store.session_user

        def session_user(token_hash: str) -> str | None:
            seen.append(threading.current_thread().name)
            return original(token_hash)

        store.session_user = session_user
        store.add_session("t1", "coord-a", 2e9)
        assert await asyncio.gather(store.aio.session_user("t1"), store.aio.session_user("t2")) == ["coord-a", None]
        assert seen and all(name.startswith("notify-store") for name in seen)
        with pytest.raises(AttributeError):
            store.aio._writing  # noqa: B018 (private methods have no async face)
    finally:
        store.close()
