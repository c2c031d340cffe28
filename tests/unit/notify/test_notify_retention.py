"""Retention runs by itself: dead deliveries past their retention are removed on a schedule,
delivered and pending ones are never touched, and a failing run does not stop the next."""

from __future__ import annotations

import asyncio
import time

from meshkernel.retention import run_periodically
from services.notify.adapters.store import NotifyStore


def _delivery(store: NotifyStore, notification_id: str, *, status: str) -> None:
    store.record_notification(
        notification_id=notification_id,
        case_id="case-r",
        audience="AGENCY",
        recipient="shelter-utrecht",
        template="t",
        language="nl",
        channel="webhook",
        envelope=b"x",
    )
    if status != "pending":
        store.record_attempt(
            notification_id, result="gave up" if status == "dead" else "ok", duration_ms=1, status=status
        )


def test_only_dead_deliveries_finished_before_the_horizon_are_removed(tmp_path):
    store = NotifyStore.open(f"sqlite:///{tmp_path / 'notify.db'}")
    try:
        for notification_id, status in (("old-dead", "dead"), ("delivered", "delivered"), ("pending", "pending")):
            _delivery(store, notification_id, status=status)
        horizon = time.time() + 1  # everything finished so far lies before it

        assert store.purge_dead_deliveries(horizon) == 1
        assert store.delivery("old-dead") is None and store.attempts("old-dead") == []
        assert store.delivery("delivered") is not None and store.delivery("pending") is not None
        assert store.purge_dead_deliveries(horizon) == 0
    finally:
        store.close()


def test_the_schedule_runs_again_after_a_failed_run():
    runs = []

    async def scenario():
        loop = asyncio.get_running_loop()
        second_run = asyncio.Event()

        def remove_expired() -> int:  # runs in a worker thread
            runs.append(len(runs))
            if len(runs) == 1:
                raise OSError("database away")
            loop.call_soon_threadsafe(second_run.set)
            return 2

        task = asyncio.create_task(run_periodically("test_job", remove_expired, every_seconds=0.01))
        await asyncio.wait_for(second_run.wait(), timeout=10)
        task.cancel()

    asyncio.run(scenario())
    assert len(runs) >= 2
