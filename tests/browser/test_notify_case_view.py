"""The case view and the insight page in real Chromium, on a notify worker fed through real
Kafka: a stalled case's alerts make one card with its timeline, taking the case leaves none of
its alerts open, and the insight page draws its charts with tables and no case ids.
Screenshots go to test-artifacts/."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as seen
from selenium.webdriver.support.ui import WebDriverWait

from meshkernel import envelope as envelopes
from meshkernel.topics import ASSIGNMENTS, ESCALATIONS, REFERRAL_EVENTS
from referralmesh.v1 import common_pb2, events_pb2
from tests.integration.notify.notify_kit import DEMO_PASSWORD, escalation, new_case

pytestmark = pytest.mark.kafka


def _referral(case_id: str, status, before, at: datetime) -> events_pb2.EventEnvelope:
    payload = events_pb2.ReferralEvent(
        referral_id=f"ref-{case_id}", to_status=status, from_status=before, actor="shelter-den-haag"
    )
    envelope = envelopes.new_envelope(
        case_id=case_id, producer="referral-test", event_id=str(uuid.uuid4()), referral=payload
    )
    envelope.occurred_at.FromDatetime(at)
    return envelope


def _assignment(case_id: str, at: datetime, **extra) -> events_pb2.EventEnvelope:
    payload = events_pb2.AssignmentEvent(
        referral_id=f"ref-{case_id}", responsible_region="GM0518", rule="help_asked_here", **extra
    )
    envelope = envelopes.new_envelope(
        case_id=case_id, producer="region-test", event_id=str(uuid.uuid4()), assignment=payload
    )
    envelope.occurred_at.FromDatetime(at)
    return envelope


def _sign_in(browser, notify, username: str, lang: str) -> WebDriverWait:
    wait = WebDriverWait(browser, 30)
    browser.get(f"{notify.base_url}/login?lang={lang}")
    browser.find_element(By.ID, "username").send_keys(username)
    browser.find_element(By.ID, "password").send_keys(DEMO_PASSWORD, Keys.ENTER)
    wait.until(seen.presence_of_element_located((By.ID, "alerts")))
    return wait


def test_a_stalled_case_is_one_card_with_its_timeline_and_taking_it_leaves_no_alert_open(
    notify, producer, browser, artifacts
):
    wait = _sign_in(browser, notify, "coord-gm0518", "nl")
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "nl"  # Dutch by default
    case_id = new_case()
    started = datetime.now(UTC) - timedelta(hours=30)
    producer.send(REFERRAL_EVENTS, _referral(case_id, common_pb2.REQUESTED, 0, started))
    producer.send(ASSIGNMENTS, _assignment(case_id, started + timedelta(seconds=1)))
    reminder = escalation(case_id, level=events_pb2.AGENCY_REMINDER, rule="not_acknowledged")
    climbed = escalation(case_id, level=events_pb2.REGION_COORDINATOR, rule="not_answered")
    producer.send(ESCALATIONS, reminder)
    producer.send(ESCALATIONS, climbed)

    wait.until(seen.presence_of_element_located((By.ID, f"case-{case_id}")))
    # Both escalations and the referral's facts arrive on three topics in any order, and the live
    # list is swapped whole on each; wait until the card shows them all before holding any element.
    wait.until(lambda _: _shows_everything(browser, case_id))
    card = browser.find_element(By.ID, f"case-{case_id}")
    assert len(browser.find_elements(By.CSS_SELECTOR, f"[data-case-id='{case_id}']")) == 1  # one card
    assert card.get_attribute("data-level") == "REGION_COORDINATOR"
    assert "Regiocoördinator" in card.text and "Nog niemand" in card.text
    count = browser.find_element(By.CSS_SELECTOR, "#per-level [data-level='REGION_COORDINATOR'] .number")
    assert int(count.text) >= 1
    # The timeline, opened with the keyboard: referral state, decision and both escalations, in words.
    # Once the focus is inside the list, the live list holds still.
    WebDriverWait(browser, 30, ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda driver: _open_timeline(driver, case_id)
    )
    card = browser.find_element(By.ID, f"case-{case_id}")
    timeline = card.find_element(By.CSS_SELECTOR, "ol.timeline").text
    assert "Aangevraagd" in timeline and "Hulp is hier gevraagd" in timeline
    assert "Organisatie bevestigde niet op tijd" in timeline and "Niet op tijd geaccepteerd of afgewezen" in timeline
    for control in browser.find_elements(By.CSS_SELECTOR, "#alerts select, form.filters select"):
        assert browser.find_elements(By.CSS_SELECTOR, f"label[for='{control.get_attribute('id')}']")
    browser.save_screenshot(str(artifacts / "notify-case-view.png"))

    # Take the case with the keyboard: every alert of it is taken, the older reminder too.
    card.find_element(By.CSS_SELECTOR, "button.take").send_keys(Keys.ENTER)
    WebDriverWait(browser, 30, ignored_exceptions=(WebDriverException,)).until(
        lambda driver: driver.find_elements(By.CSS_SELECTOR, "p.message[role=status]")
    )
    card = browser.find_element(By.ID, f"case-{case_id}")
    assert card.get_attribute("data-state") == "TAKEN"
    assert "coord-gm0518" in card.find_element(By.CLASS_NAME, "handler").text
    browser.get(f"{notify.base_url}/dashboard?state=OPEN")
    assert not browser.find_elements(By.ID, f"case-{case_id}")  # no alert of the case is still open
    browser.get(f"{notify.base_url}/dashboard?lang=en")
    card = browser.find_element(By.ID, f"case-{case_id}")
    assert "Being handled" in card.text and "Who handles it" in card.text
    browser.save_screenshot(str(artifacts / "notify-case-view-taken.png"))


def test_the_insight_page_draws_charts_with_tables_and_no_case_ids(notify, producer, browser, artifacts):
    now = datetime.now(UTC)
    requested_at = now - timedelta(hours=10)
    cases = [new_case() for _ in range(3)]
    for index, case_id in enumerate(cases):
        producer.send(REFERRAL_EVENTS, _referral(case_id, common_pb2.REQUESTED, 0, requested_at))
        producer.send(ASSIGNMENTS, _assignment(case_id, requested_at, bound_nowhere=True, handover_to="GM0344"))
        producer.send(
            REFERRAL_EVENTS,
            _referral(case_id, common_pb2.ACCEPTED, common_pb2.RECEIVED, requested_at + timedelta(hours=2 + 3 * index)),
        )
    producer.send(ESCALATIONS, escalation(cases[0], level=events_pb2.REGION_COORDINATOR, rule="not_answered"))

    wait = _sign_in(browser, notify, "coord-gm0518", "en")
    browser.get(f"{notify.base_url}/insight")
    wait.until(seen.presence_of_element_located((By.ID, "acceptance-distribution")))

    def accepted_in_table() -> int:
        browser.get(f"{notify.base_url}/insight")
        rows = browser.find_elements(By.CSS_SELECTOR, "#table-acceptance-distribution tbody tr td")
        return sum(int(cell.get_attribute("textContent")) for cell in rows)

    wait.until(lambda _: accepted_in_table() >= 3)
    for chart in (
        "acceptance-distribution",
        "acceptance-weekly",
        "open-by-level",
        "stalls-by-rule",
        "bound-nowhere",
        "handovers",
    ):
        svg = browser.find_element(By.ID, chart)
        assert svg.get_attribute("role") == "img" and svg.find_element(By.TAG_NAME, "title")
        assert browser.find_elements(By.ID, f"table-{chart}")  # the chart's text alternative
    page = browser.page_source
    assert "Not accepted or declined in time" in page  # the rule by its label
    assert not any(case_id in page for case_id in cases)  # numbers only
    height = browser.execute_script("return document.body.scrollHeight;")
    browser.set_window_size(1366, min(int(height) + 100, 6000))  # every chart in one screenshot
    browser.save_screenshot(str(artifacts / "notify-insight.png"))

    browser.get(f"{notify.base_url}/insight?lang=nl")
    assert "Tijd van aanvraag tot acceptatie" in browser.page_source or "Verdeling" in browser.page_source
    browser.save_screenshot(str(artifacts / "notify-insight-nl.png"))


def _card_text(browser, case_id: str) -> str:
    return browser.execute_script(
        "var card = document.getElementById(arguments[0]); return card ? card.textContent : '';",
        f"case-{case_id}",
    )


def _shows_everything(browser, case_id: str) -> bool:
    """Two alerts counted and the referral's request and decision in the (closed) timeline."""
    counted = browser.execute_script(
        "var n = document.querySelector(arguments[0]); return n ? n.textContent.trim() : '';",
        f"#case-{case_id} .alerts-count",
    )
    text = _card_text(browser, case_id)
    return counted == "2" and "Aangevraagd" in text and "Hulp is hier gevraagd" in text


def _open_timeline(browser, case_id: str) -> bool:
    details = browser.find_element(By.CSS_SELECTOR, f"#case-{case_id} details")
    if details.get_attribute("open") is None:
        details.find_element(By.TAG_NAME, "summary").send_keys(Keys.ENTER)
    return details.get_attribute("open") is not None
