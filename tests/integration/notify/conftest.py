"""A private notify worker on the real broker, shared by the tests of this folder."""

from __future__ import annotations

import pytest

from tests.integration.notify.notify_kit import NotifyProcess, Producer, notify_env


@pytest.fixture(scope="module")
def notify(kafka_bootstrap, tmp_path_factory):
    base = tmp_path_factory.mktemp("notify")
    process = NotifyProcess(notify_env(kafka_bootstrap, base), base / "logs").start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def producer(notify):
    sender = Producer(notify.config)
    yield sender
    sender.close()
