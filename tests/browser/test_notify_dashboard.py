"""A coordinator signs in, an escalation produced on real Kafka appears without a reload, and
acknowledging it changes its state; a screenshot is saved to test-artifacts/."""

from __future__ import annotations

import pytest
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as seen
from selenium.webdriver.support.ui import WebDriverWait

from meshkernel.topics import ESCALATIONS
from referralmesh.v1 import events_pb2
from tests.integration.notify.notify_kit import DEMO_PASSWORD, escalation, new_case

pytestmark = pytest.mark.kafka


def test_a_coordinator_sees_an_escalation_arrive_live_and_acknowledges_it(notify, producer, browser, artifacts):
    wait = WebDriverWait(browser, 30)
    browser.get(notify.base_url + "/login?lang=en")
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
    # Sign in with the keyboard only.
    browser.find_element(By.ID, "username").send_keys("coord-gm0518")
    browser.find_element(By.ID, "password").send_keys(DEMO_PASSWORD, Keys.ENTER)
    wait.until(seen.presence_of_element_located((By.ID, "alerts")))
    assert "Coordinator Den Haag" in browser.find_element(By.CLASS_NAME, "account").text

    browser.execute_script("window.sameDocument = 'still here';")  # gone if the page reloads
    case_id, elsewhere = new_case(), new_case()
    event = escalation(case_id, region="GM0518", level=events_pb2.REGION_COORDINATOR)
    producer.send(ESCALATIONS, escalation(elsewhere, region="GM0363"))  # not this coordinator's region
    producer.send(ESCALATIONS, event)
    wait.until(seen.presence_of_element_located((By.ID, f"case-{case_id}")))
    # The live list is swapped whole when anything in view changes (the other region's event may
    # still be on its way), so read the card's state in one go rather than through a held element.
    card = read_card(browser, case_id)
    assert browser.execute_script("return window.sameDocument;") == "still here"
    assert card["state"] == "OPEN"
    assert case_id in card["text"] and "Den Haag" in card["text"]
    assert "Other rule (not_accepted_in_time)" in card["text"]  # a rule without a label keeps its code
    assert "1 d 6 h" in card["text"]  # the case's age
    assert elsewhere not in browser.page_source
    # Every control has a visible label.
    for control in browser.find_elements(By.CSS_SELECTOR, "#alerts select"):
        assert browser.find_elements(By.CSS_SELECTOR, f"label[for='{control.get_attribute('id')}']")
    browser.save_screenshot(str(artifacts / "notify-dashboard-live.png"))

    # Acknowledge with the keyboard. A focused button holds the live list still; until the focus
    # lands, a swap may replace the button, so find it again and retry.
    WebDriverWait(browser, 30, ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda driver: press_acknowledge(driver, case_id)
    )
    # The form posts and the page comes back with a status message; wait for that page, not
    # for elements of the one being replaced.
    WebDriverWait(browser, 30, ignored_exceptions=(WebDriverException,)).until(
        lambda driver: driver.find_elements(By.CSS_SELECTOR, "p.message[role=status]")
    )
    acknowledged = browser.find_element(By.ID, f"case-{case_id}")
    assert acknowledged.get_attribute("data-state") == "ACKNOWLEDGED"
    assert "Seen" in acknowledged.find_element(By.CLASS_NAME, "state").text
    assert not acknowledged.find_elements(By.CSS_SELECTOR, "button.acknowledge")
    assert "Done" in browser.find_element(By.CSS_SELECTOR, "[role=status]").text

    # Same page in Dutch.
    browser.get(notify.base_url + "/dashboard?lang=nl")
    assert "Open casussen" in browser.page_source
    assert "Gezien" in browser.find_element(By.ID, f"case-{case_id}").text
    browser.save_screenshot(str(artifacts / "notify-dashboard-acknowledged.png"))


def read_card(browser, case_id: str) -> dict[str, str]:
    return browser.execute_script(
        "var card = document.getElementById(arguments[0]);return {state: card.dataset.state, text: card.innerText};",
        f"case-{case_id}",
    )


def press_acknowledge(browser, case_id: str) -> bool:
    button = browser.find_element(By.CSS_SELECTOR, f"#case-{case_id} button.acknowledge")
    button.send_keys(Keys.ENTER)
    return True
