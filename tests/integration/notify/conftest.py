"""A private notify worker on the real broker, and PostgreSQL, shared by the tests of this folder."""

from __future__ import annotations

import os
import subprocess

import pytest

from meshkernel.config import PROJECT_ROOT
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


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """PostgreSQL from scripts/postgres.sh (reused when it runs), or TEST_POSTGRES_URL. Missing
    binaries fail the run loudly, as for the referral storage tests."""
    external = os.environ.get("TEST_POSTGRES_URL")
    if external:
        return external
    script = str(PROJECT_ROOT / "scripts" / "postgres.sh")
    started = subprocess.run([script, "start"], capture_output=True, text=True)
    if started.returncode != 0:
        pytest.fail(f"PostgreSQL is needed for the notify replica tests:\n{started.stderr.strip()}", pytrace=False)
    return subprocess.run([script, "url"], capture_output=True, text=True, check=True).stdout.strip()
