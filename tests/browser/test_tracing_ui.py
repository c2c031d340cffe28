"""The operator's view: find a referral's trace in the Zipkin UI, with spans of all three services."""

from __future__ import annotations

import time
import urllib.parse
import uuid

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import send_demo_referral
from tests.e2e.test_tracing import find_case_traces

pytestmark = pytest.mark.kafka

SERVICES = ("referral", "region", "notify")


def _page_text(browser) -> str:
    return browser.find_element(By.TAG_NAME, "body").text.lower()


def test_an_operator_finds_the_referral_trace_by_case_id(traced_mesh, browser, artifacts):
    _stack, config, zipkin = traced_mesh
    case_id = f"case-{uuid.uuid4().hex[:12]}"
    send_demo_referral(config, case_id)

    traces = find_case_traces(zipkin, case_id, set(SERVICES))
    trace_id = traces[0][0]["traceId"]

    # Search as an operator would: by the case id tag.
    query = urllib.parse.urlencode({"annotationQuery": f"referralmesh.case_id={case_id}", "lookback": "1h"})
    browser.get(f"{zipkin}/zipkin/?{query}")
    WebDriverWait(browser, 30).until(lambda b: trace_id[:8] in b.page_source or "referral" in _page_text(b))
    browser.save_screenshot(str(artifacts / "zipkin-search-by-case.png"))

    browser.get(f"{zipkin}/zipkin/traces/{trace_id}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all(name in _page_text(browser) for name in SERVICES):
        time.sleep(0.5)
    text = _page_text(browser)
    browser.save_screenshot(str(artifacts / "zipkin-referral-trace.png"))
    for name in SERVICES:
        assert name in text, f"the trace page shows no spans of the {name} service"
    assert "createreferral" in text
