"""Real headless Chromium (Debian's chromium + chromium-driver) driven by Selenium, and a
private notify worker on the real broker for it to look at."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from meshkernel.config import PROJECT_ROOT
from tests.integration.notify.notify_kit import NotifyProcess, Producer, notify_env

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = PROJECT_ROOT / "test-artifacts"


@pytest.fixture(scope="module")
def notify(kafka_bootstrap, tmp_path_factory):
    base = tmp_path_factory.mktemp("notify-browser")
    process = NotifyProcess(notify_env(kafka_bootstrap, base), base / "logs").start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def producer(notify):
    sender = Producer(notify.config)
    yield sender
    sender.close()


@pytest.fixture
def browser(tmp_path):
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        message = "needs Debian's chromium and chromium-driver packages"
        if os.environ.get("CI"):
            pytest.fail(message + " (.ci/run installs them)")  # CI must never skip these silently
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1366,900",
        f"--user-data-dir={tmp_path / 'chromium'}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
