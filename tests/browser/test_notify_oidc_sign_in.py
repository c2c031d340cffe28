"""Sign-in with the organisation's identity provider, end to end in Chromium against a real
OpenID Connect provider (panva's oidc-provider, started here): the coordinator chooses the
provider, signs in on its page, and lands on the dashboard with the region from the ID token's
claim, seeing only that region's alerts. A user without a region and a tampered state are
refused. Screenshots go to test-artifacts/."""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

import pytest
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as seen
from selenium.webdriver.support.ui import WebDriverWait

from meshkernel.topics import ESCALATIONS
from services.notify.adapters.oidc import PendingSignIn
from services.notify.adapters.oidc_dashboard import PENDING_COOKIE
from services.notify.adapters.store import NotifyStore
from services.notify.paths import NotifyPaths
from tests.browser.oidc_provider import CLIENT_ID, CLIENT_SECRET, OidcProvider
from tests.integration.notify.notify_kit import NotifyProcess, Producer, escalation, new_case, notify_env

pytestmark = pytest.mark.kafka

ACCOUNTS = {
    "coord-den-haag": {"mesh_region": "GM0518"},
    "coord-without-region": {},
}


@pytest.fixture(scope="module")
def oidc_mesh(kafka_bootstrap, tmp_path_factory):
    base = tmp_path_factory.mktemp("notify-oidc")
    env = notify_env(kafka_bootstrap, base)
    callback = f"http://127.0.0.1:{env['MESH_NOTIFY_WEB_PORT']}/login/oidc/callback"
    provider = OidcProvider(callback, ACCOUNTS, base / "logs").start()
    secret = base / "oidc-client-secret"
    secret.write_text(CLIENT_SECRET + "\n")
    secret.chmod(0o600)
    env.update(
        MESH_NOTIFY_OIDC_ISSUER=provider.issuer,
        MESH_NOTIFY_OIDC_CLIENT_ID=CLIENT_ID,
        MESH_NOTIFY_OIDC_CLIENT_SECRET_FILE=str(secret),
        MESH_NOTIFY_OIDC_REDIRECT_URL=callback,
        MESH_NOTIFY_OIDC_SCOPES="openid mesh",
        MESH_NOTIFY_OIDC_SCOPE_CLAIM="mesh_region",
        MESH_NOTIFY_OIDC_LABEL="Test identity provider",
    )
    try:
        notify = NotifyProcess(env, base / "logs").start()
    except Exception:
        provider.stop()
        raise
    yield notify, provider
    notify.stop()
    provider.stop()


@pytest.fixture(scope="module")
def oidc_producer(oidc_mesh):
    sender = Producer(oidc_mesh[0].config)
    yield sender
    sender.close()


def sign_in_at_the_provider(browser, account: str) -> None:
    """The provider's own pages: its login form, then its consent form."""
    wait = WebDriverWait(browser, 60)
    login = wait.until(seen.presence_of_element_located((By.NAME, "login")))
    assert urlsplit(browser.current_url).hostname == "localhost"  # really at the provider
    login.send_keys(account)
    browser.find_element(By.NAME, "password").send_keys("any password the test provider accepts")
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    consent = wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, "form input[name=prompt][value=consent]")))
    consent.find_element(By.XPATH, "./ancestor::form").find_element(By.CSS_SELECTOR, "button[type=submit]").click()


def choose_the_identity_provider(browser, notify) -> None:
    browser.get(notify.base_url + "/login?lang=en")
    link = WebDriverWait(browser, 30).until(seen.element_to_be_clickable((By.ID, "sign-in-oidc")))
    assert link.text == "Sign in with Test identity provider"
    link.click()


def test_a_coordinator_signs_in_at_the_identity_provider_and_sees_only_their_region(
    oidc_mesh, oidc_producer, browser, artifacts
):
    notify, _ = oidc_mesh
    here, elsewhere = new_case(), new_case()
    mine = escalation(here, region="GM0518")
    oidc_producer.send(ESCALATIONS, escalation(elsewhere, region="GM0363"))
    oidc_producer.send(ESCALATIONS, mine)

    choose_the_identity_provider(browser, notify)
    sign_in_at_the_provider(browser, "coord-den-haag")

    wait = WebDriverWait(browser, 60)
    wait.until(seen.presence_of_element_located((By.ID, "alerts")))
    assert urlsplit(browser.current_url).path == "/dashboard"
    assert "Coordinator Den Haag" in browser.find_element(By.CLASS_NAME, "account").text
    wait.until(seen.presence_of_element_located((By.ID, f"case-{here}")))  # one card per case
    assert elsewhere not in browser.page_source
    browser.save_screenshot(str(artifacts / "notify-oidc-signed-in.png"))

    store = NotifyStore.open(NotifyPaths.of(notify.config).database_url)
    try:
        account = store.coordinator("oidc:coord-den-haag")
        assert account is not None and account["scope"] == "GM0518"
        sign_ins = [row for row in store.access_entries() if row["action"] == "SIGN_IN"]
        assert any(row["actor"] == "oidc:coord-den-haag" and row["result"] == "ok" for row in sign_ins)
    finally:
        store.close()


def test_a_user_without_a_region_is_refused_with_a_plain_message(oidc_mesh, browser, artifacts):
    notify, _ = oidc_mesh
    choose_the_identity_provider(browser, notify)
    sign_in_at_the_provider(browser, "coord-without-region")

    refusal = WebDriverWait(browser, 60).until(seen.presence_of_element_located((By.CSS_SELECTOR, "[role=alert]")))
    assert refusal.get_attribute("data-reason") == "no_scope"
    assert "has no region for this dashboard" in refusal.text
    browser.save_screenshot(str(artifacts / "notify-oidc-no-region.png"))
    browser.get(notify.base_url + "/dashboard")  # and no session was made
    WebDriverWait(browser, 30).until(lambda driver: urlsplit(driver.current_url).path == "/login")


def test_a_tampered_state_is_refused(oidc_mesh, browser):
    notify, provider = oidc_mesh
    choose_the_identity_provider(browser, notify)
    WebDriverWait(browser, 60).until(seen.presence_of_element_located((By.NAME, "login")))
    # The same authorisation request this browser's sign-in began with (its nonce and PKCE
    # challenge), but carrying another state: the provider answers with that state, and the
    # dashboard must refuse it although everything else is genuine.
    dashboard_cookies = browser.execute_cdp_cmd("Network.getCookies", {"urls": [notify.base_url]})["cookies"]
    pending = PendingSignIn.from_cookie(
        next((c["value"] for c in dashboard_cookies if c["name"] == PENDING_COOKIE), None)
    )
    assert pending is not None
    query = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": provider.redirect_uri,
        "scope": "openid mesh",
        "state": "tampered-" + pending.state[:20],
        "nonce": pending.nonce,
        "code_challenge": create_s256_code_challenge(pending.code_verifier),
        "code_challenge_method": "S256",
    }
    browser.get(f"{provider.issuer}/auth?{urlencode(query)}")
    sign_in_at_the_provider(browser, "coord-den-haag")

    refusal = WebDriverWait(browser, 60).until(seen.presence_of_element_located((By.CSS_SELECTOR, "[role=alert]")))
    assert refusal.get_attribute("data-reason") == "state"
    browser.get(notify.base_url + "/dashboard")
    WebDriverWait(browser, 30).until(lambda driver: urlsplit(driver.current_url).path == "/login")
